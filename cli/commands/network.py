"""mc network: placeholder until the network commands land (issue 6)."""

from __future__ import annotations

import click


@click.group()
def network() -> None:
    """Manage and attach instances to networks."""

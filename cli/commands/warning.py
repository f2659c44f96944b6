"""mc warning: placeholder until the warning commands land (issue 7)."""

from __future__ import annotations

import click


@click.group()
def warning() -> None:
    """Manage warnings."""

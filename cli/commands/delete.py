"""`mc delete` (alias `rm`): instances and `inst/snap` snapshots."""

from __future__ import annotations

import click

from cli.context import Env, pass_env
from cli.errors import CliError
from cli.params import split_snapshot, url_part


@click.command("delete")
@click.argument("names", nargs=-1, required=True, metavar="[<remote>:]<instance>[/<snapshot>]...")
@click.option("-f", "--force", is_flag=True, help="Force the removal of running instances.")
@click.option("-i", "--interactive", is_flag=True, help="Require user confirmation.")
@pass_env
def delete(env: Env, names: tuple[str, ...], force: bool, interactive: bool) -> None:
    """Delete instances and snapshots."""
    for arg in names:
        client, obj = env.target(arg)
        inst, snap = split_snapshot(obj)
        if interactive:
            answer = click.prompt(
                f"Remove {arg} (yes/no)", prompt_suffix=": ", default="", show_default=False
            )
            if answer.strip().lower() not in ("y", "yes"):
                raise CliError("User aborted delete operation")
        base = f"/1.0/instances/{url_part(inst)}"
        if snap is not None:
            client.delete(f"{base}/snapshots/{url_part(snap)}")
            continue
        if force:
            state = client.get(f"{base}/state") or {}
            if str(state.get("status", "")).lower() in ("running", "frozen"):
                body = {"action": "stop", "timeout": -1, "force": True, "stateful": False}
                client.put(f"{base}/state", body)
        client.delete(base)

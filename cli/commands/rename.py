"""`mc rename OLD NEW` within one remote (instances and `inst/snap` snapshots). `mc move`,
which also renames, is in cli/commands/copy.py."""

from __future__ import annotations

import click

from cli.context import Env, pass_env
from cli.errors import CliError
from cli.params import local_name, split_snapshot, url_part


def rename_request(old: str, new: str) -> tuple[str, dict[str, str]]:
    """(URL, body) of the POST that renames an instance or an `inst/snap` snapshot (both
    names without their remote)."""
    inst, snap = split_snapshot(local_name(old))
    new_inst, new_snap = split_snapshot(local_name(new))
    if snap is None:
        if new_snap is not None:
            raise CliError("An instance can't be renamed to a snapshot")
        return f"/1.0/instances/{url_part(inst)}", {"name": new_inst}
    if new_snap is None:
        new_inst, new_snap = inst, new_inst
    if new_inst != inst:
        raise CliError("A snapshot can't be moved to another instance")
    return f"/1.0/instances/{url_part(inst)}/snapshots/{url_part(snap)}", {"name": new_snap}


@click.command("rename")
@click.argument("old", metavar="[<remote>:]<instance>[/<snapshot>]")
@click.argument("new", metavar="<instance>[/<snapshot>]")
@pass_env
def rename(env: Env, old: str, new: str) -> None:
    """Rename instances and snapshots."""
    _rename(env, old, new)


def _rename(env: Env, old: str, new: str) -> None:
    client, old_name = env.target(old)
    remote = env.split(old)[0]
    new_remote, new_name = env.split(new) if ":" in new.partition("/")[0] else (remote, new)
    if new_remote != remote:
        raise CliError("Renaming between remotes is not supported: rename within one "
                       "remote")
    url, body = rename_request(old_name, new_name)
    client.post(url, body)

"""`mc start|stop|restart|pause|resume`: PUT /1.0/instances/<n>/state."""

from __future__ import annotations

from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import CliError
from cli.params import url_part

# action -> statuses an instance must have to be picked by --all
ALL_FILTER = {
    "start": ("stopped",),
    "stop": ("running", "frozen"),
    "restart": ("running",),
    "freeze": ("running",),
    "unfreeze": ("frozen",),
}


def state_request(action: str, timeout: int = -1, force: bool = False) -> dict[str, Any]:
    return {"action": action, "timeout": timeout, "force": force, "stateful": False}


def run_action(
    env: Env, action: str, verb: str, names: tuple[str, ...], all_: bool, **opts: Any
) -> None:
    if all_:
        if names:
            raise click.UsageError("Both --all and instance names given")
        client = env.client()
        instances = client.get("/1.0/instances?recursion=1") or []
        targets = [
            (client, name)
            for name in sorted(
                i["name"] for i in instances
                if str(i.get("status", "")).lower() in ALL_FILTER[action]
            )
        ]
    elif not names:
        raise click.UsageError("Missing instance name")
    else:
        targets = [env.target(n) for n in names]
    body = state_request(action, **opts)
    if len(targets) == 1:
        client, name = targets[0]
        client.put(f"/1.0/instances/{url_part(name)}/state", body)
        return
    failed = False
    for client, name in targets:
        try:
            client.put(f"/1.0/instances/{url_part(name)}/state", body)
        except CliError as e:
            failed = True
            click.echo(f"Error: {name}: {e.message}", err=True)
    if failed:
        raise CliError(f"Some instances failed to {verb}")


_names = click.argument("names", nargs=-1, metavar="[<remote>:]<instance>...")
_all = click.option("--all", "all_", is_flag=True, help="Run against all instances.")


def _stop_options(f: Any) -> Any:
    f = click.option(
        "--timeout",
        type=int,
        default=-1,
        show_default=True,
        help="Seconds to wait for a clean shutdown (-1: server default).",
    )(f)
    return click.option("-f", "--force", is_flag=True, help="Force the instance to stop.")(f)


@click.command("start")
@_names
@_all
@pass_env
def start(env: Env, names: tuple[str, ...], all_: bool) -> None:
    """Start instances."""
    run_action(env, "start", "start", names, all_)


@click.command("stop")
@_names
@_all
@_stop_options
@pass_env
def stop(env: Env, names: tuple[str, ...], all_: bool, force: bool, timeout: int) -> None:
    """Stop instances."""
    run_action(env, "stop", "stop", names, all_, timeout=timeout, force=force)


@click.command("restart")
@_names
@_all
@_stop_options
@pass_env
def restart(env: Env, names: tuple[str, ...], all_: bool, force: bool, timeout: int) -> None:
    """Restart instances."""
    run_action(env, "restart", "restart", names, all_, timeout=timeout, force=force)


@click.command("pause")
@_names
@_all
@pass_env
def pause(env: Env, names: tuple[str, ...], all_: bool) -> None:
    """Pause (freeze) instances."""
    run_action(env, "freeze", "pause", names, all_)


@click.command("resume")
@_names
@_all
@pass_env
def resume(env: Env, names: tuple[str, ...], all_: bool) -> None:
    """Resume (unfreeze) instances."""
    run_action(env, "unfreeze", "resume", names, all_)

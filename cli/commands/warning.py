"""`mc warning list|show|acknowledge|delete` (as lxc warning): what the server noticed that
needs an operator, e.g. an instance that could not be autostarted."""

from __future__ import annotations

from typing import Any

import click

from cli.client import Client
from cli.context import Env, format_option, pass_env
from cli.lazy import LazyGroup
from cli.output import format_upload_date, parse_format, render, render_yaml
from cli.params import url_part

# lxc's shorthand letters (L, location, is for clusters only), plus e for the entity.
COLUMNS: dict[str, tuple[str, Any]] = {
    "u": ("UUID", lambda w: str(w.get("uuid", ""))),
    "t": ("TYPE", lambda w: str(w.get("type", ""))),
    "S": ("STATUS", lambda w: str(w.get("status", "")).upper()),
    "s": ("SEVERITY", lambda w: str(w.get("severity", "")).upper()),
    "c": ("COUNT", lambda w: str(w.get("count", ""))),
    "p": ("PROJECT", lambda w: str(w.get("project", ""))),
    "e": ("ENTITY", lambda w: str(w.get("entity_url", ""))),
    "f": ("FIRST SEEN", lambda w: format_upload_date(w.get("first_seen_at"))),
    "l": ("LAST SEEN", lambda w: format_upload_date(w.get("last_seen_at"))),
}
DEFAULT_COLUMNS = "utSscpel"


def parse_columns(spec: str) -> list[str]:
    """`utS,c` -> the shorthand letters in order; a clear error for anything else."""
    letters = []
    for entry in spec.split(","):
        if not entry:
            raise click.BadParameter(f'empty column entry in "{spec}"', param_hint="'-c'")
        for letter in entry:
            if letter not in COLUMNS:
                raise click.BadParameter(
                    f'unknown column "{letter}" in "{spec}" (accepted: '
                    f'{"".join(COLUMNS)})', param_hint="'-c'")
            letters.append(letter)
    return letters


def visible(warnings: list[dict[str, Any]], show_all: bool) -> list[dict[str, Any]]:
    """As lxc: acknowledged (and resolved) warnings only with --all."""
    if show_all:
        return warnings
    return [w for w in warnings if w.get("status") not in ("acknowledged", "resolved")]


def _client(env: Env, remote: str | None) -> Client:
    if remote is None:
        return env.client()
    where, rest = env.split(remote)
    if rest or ":" not in remote:
        raise click.UsageError(f'Unexpected argument "{remote}": expected [<remote>:]')
    return env.client(where)


def _target(env: Env, arg: str) -> tuple[Client, str]:
    client, uuid = env.target(arg, "warning")
    return client, url_part(uuid)


@click.group("warning", cls=LazyGroup, aliases={"ls": "list", "ack": "acknowledge",
                                                 "rm": "delete"})
def warning() -> None:
    """Manage warnings."""


@warning.command("list")
@click.argument("remote", required=False, metavar="[<remote>:]")
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Also list acknowledged warnings.")
@click.option("-c", "--columns", default=DEFAULT_COLUMNS, show_default=True,
              help="Columns: u uuid, t type, S status, s severity, c count, p project, "
                   "e entity, f first seen, l last seen.")
@format_option
@pass_env
def list_cmd(env: Env, remote: str | None, show_all: bool, columns: str, fmt: str) -> None:
    """List warnings (new ones; --all for acknowledged ones too)."""
    parse_format(fmt)
    letters = parse_columns(columns)
    shown = visible(list(_client(env, remote).get("/1.0/warnings?recursion=1") or []), show_all)
    shown.sort(key=lambda w: (str(w.get("last_seen_at", "")), str(w.get("uuid", ""))))
    header = [COLUMNS[c][0] for c in letters]
    rows = [[COLUMNS[c][1](w) for c in letters] for w in shown]
    click.echo(render(fmt, header, rows, shown), nl=False)


@warning.command("show")
@click.argument("uuid", metavar="[<remote>:]<warning-uuid>")
@pass_env
def show(env: Env, uuid: str) -> None:
    """Show a warning."""
    client, part = _target(env, uuid)
    click.echo(render_yaml(client.get(f"/1.0/warnings/{part}")), nl=False)


@warning.command("acknowledge")
@click.argument("uuid", metavar="[<remote>:]<warning-uuid>")
@pass_env
def acknowledge(env: Env, uuid: str) -> None:
    """Acknowledge a warning (mc warning list then hides it until it happens again)."""
    client, part = _target(env, uuid)
    client.put(f"/1.0/warnings/{part}", {"status": "acknowledged"})


@warning.command("delete")
@click.argument("uuid", required=False, metavar="[<remote>:]<warning-uuid>")
@click.option("-a", "--all", "delete_all", is_flag=True,
              help="Delete all warnings (of [<remote>:]).")
@pass_env
def delete(env: Env, uuid: str | None, delete_all: bool) -> None:
    """Delete a warning, or all of them with --all."""
    if delete_all:
        client = _client(env, uuid)
        uuids = [str(w.get("uuid") or "") for w in client.get("/1.0/warnings?recursion=1") or []]
        for one in filter(None, uuids):
            client.delete(f"/1.0/warnings/{url_part(one)}")
        return
    if uuid is None:
        raise click.UsageError("Missing warning UUID (or --all)")
    client, part = _target(env, uuid)
    client.delete(f"/1.0/warnings/{part}")

"""`mc snapshot <instance> [<name>]` and `mc restore <instance> <snapshot>`, as lxc.

Snapshots are listed by `mc info`, shown by `mc config show c1/snap`, renamed by `mc rename
c1/a c1/b`, deleted by `mc delete c1/snap` and copied by `mc copy c1/snap c2`.

`--expiry` is turned into a date here, as lxc does: a span like `1d 3H` counts from now on
this machine's clock, so the server only ever sees an absolute time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import ApiError, CliError
from cli.params import split_snapshot, url_part

# lxc's span units: seconds, minutes, hours, days, weeks, months, years ("1d 3H").
_SPAN = re.compile(r"(\d+)([SMHdwmy])")
_SPAN_HELP = "a span like 1d 3H (S, M, H, d, w, m, y) or a date like 2030/01/31 15:04 UTC"


def _add_months(when: datetime, months: int) -> datetime:
    """Calendar months as Go's AddDate counts them (lxc): Jan 31 + 1m = Mar 3 (or 2), an
    overflowing day rolls into the next month rather than being clamped."""
    total = when.month - 1 + months
    first = when.replace(year=when.year + total // 12, month=total % 12 + 1, day=1)
    return first + timedelta(days=when.day - 1)


def expiry_from_span(spec: str, now: datetime) -> datetime | None:
    """`now` plus a span like `1d 3H` (each unit once, as lxc); None when `spec` is not a span."""
    fields = spec.split()
    counts: dict[str, int] = {}
    for field in fields:
        match = _SPAN.fullmatch(field)
        if match is None or match.group(2) in counts:
            return None
        counts[match.group(2)] = int(match.group(1))
    if not counts:
        return None
    months = counts.get("m", 0) + 12 * counts.get("y", 0)
    when = _add_months(now, months) if months else now
    try:
        return when + timedelta(weeks=counts.get("w", 0), days=counts.get("d", 0),
                                hours=counts.get("H", 0), minutes=counts.get("M", 0),
                                seconds=counts.get("S", 0))
    except OverflowError:
        return None


def parse_date(spec: str) -> datetime | None:
    """lxc's `2006/01/02 15:04 MST` (zone UTC/GMT/Z or none = local time) or an ISO 8601 /
    RFC 3339 time; None when it is neither."""
    text = spec.strip()
    for layout in ("%Y/%m/%d %H:%M", "%Y/%m/%d"):
        for zone in ("UTC", "GMT", "Z", ""):
            body = text[: -len(zone)].rstrip() if zone and text.endswith(zone) else text
            if zone and body == text:
                continue
            try:
                when = datetime.strptime(body, layout)
            except ValueError:
                continue
            return when.replace(tzinfo=UTC) if zone else when.astimezone()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.astimezone()


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_expiry(spec: str, now: datetime) -> str:
    """`--expiry` as the RFC 3339 UTC time the API takes. A span counts from `now`."""
    when = expiry_from_span(spec, now)
    if when is None:
        when = parse_date(spec)
    if when is None:
        raise CliError(f'Invalid expiry "{spec}": expected {_SPAN_HELP}')
    if when <= now:
        raise CliError(f'The expiry "{spec}" is in the past ({rfc3339(when)})')
    return rfc3339(when)


def snapshot_request(snap: str | None, *, stateful: bool = False, expiry: str | None = None,
                     no_expiry: bool = False, reuse: bool = False,
                     now: datetime | None = None) -> dict[str, Any]:
    """The POST /1.0/instances/<n>/snapshots body. Without expires_at the server applies the
    instance's snapshots.expiry; "" means never (--no-expiry)."""
    if no_expiry and expiry is not None:
        raise CliError("Can't use both --no-expiry and --expiry")
    if snap is not None:
        check_snapshot_name(snap)
    body: dict[str, Any] = {"name": snap or "", "stateful": stateful}
    if no_expiry:
        body["expires_at"] = ""
    elif expiry is not None:
        body["expires_at"] = parse_expiry(expiry, now or datetime.now(UTC))
    if reuse:
        body["reuse"] = True
    return body


# The server's rule (machined/instances/copying.py), checked here first so that `mc snapshot`
# and `mc rename c1/a c1/b` refuse the same names with the same words.
_SNAP_UNSAFE = "/?&+#%"
SNAPSHOT_NAMES = ("1 to 255 characters, not '.' or '..', without surrounding spaces, control "
                  "characters or any of " + " ".join(_SNAP_UNSAFE))


def check_snapshot_name(snap: str) -> None:
    """The checks machined makes, early and with the accepted form."""
    bad = any(c in _SNAP_UNSAFE or ord(c) < 32 or ord(c) == 127 for c in snap)
    if (not snap or bad or snap in (".", "..") or snap.strip() != snap
            or len(snap) > 255):
        raise CliError(f'Invalid snapshot name "{snap}": use {SNAPSHOT_NAMES}')


def restore_target(instance: str, snap: str) -> str:
    """The snapshot's own name: `snap`, or `c1/snap` naming the same instance (incus)."""
    inst, name = split_snapshot(snap)
    if name is None:
        return snap
    if inst != instance:
        raise CliError(f'"{snap}" is a snapshot of {inst}, not of {instance}')
    if not name:
        raise CliError(f'Missing snapshot name in "{snap}"')
    return name


def snapshot_from_operation(op: dict[str, Any]) -> str:
    """The new snapshot's name from the operation's resources (LXD: instances_snapshots)."""
    from urllib.parse import unquote

    resources = op.get("resources") or {}
    urls = resources.get("instances_snapshots") or resources.get("snapshots") or []
    return unquote(str(urls[0]).rstrip("/").rsplit("/", 1)[-1]) if urls else ""


# `incus snapshot create|list|...` sub-commands: read as instance names here (lxc's syntax),
# so a user with incus habits gets told the mc way when no such instance exists.
INCUS_VERBS = {"create": "mc snapshot <instance> [<name>]", "add": "mc snapshot <instance> "
               "[<name>]", "list": "mc info <instance>", "ls": "mc info <instance>",
               "delete": "mc delete <instance>/<snapshot>", "rm": "mc delete "
               "<instance>/<snapshot>", "rename": "mc rename <instance>/<old> <instance>/<new>",
               "restore": "mc restore <instance> <snapshot>",
               "show": "mc config show <instance>/<snapshot>"}


def verb_hint(instance: str) -> str:
    """What to type instead of `mc snapshot <incus verb> ...` ("" when it is no verb)."""
    usage = INCUS_VERBS.get(instance)
    return f" (mc uses lxc's syntax: {usage})" if usage else ""


def _instance(env: Env, arg: str) -> tuple[Any, str]:
    client, name = env.target(arg)
    if "/" in name:
        raise CliError(f'"{arg}" names a snapshot: give the instance (mc snapshot c1 snap0)')
    return client, name


@click.command("snapshot")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("name", required=False, metavar="[<snapshot name>]")
@click.option("--stateful", is_flag=True,
              help="Also save the running state (needs CRIU, which machined lacks).")
@click.option("--expiry", metavar="EXPIRY",
              help="When the snapshot expires: a span like `1d 3H` (S, M, H, d, w, m, y) or a "
              "date like `2030/01/31 15:04 UTC`.")
@click.option("--no-expiry", is_flag=True,
              help="Never expire, whatever the instance's snapshots.expiry says.")
@click.option("--reuse", is_flag=True,
              help="Replace a snapshot of the same name (atomically).")
@pass_env
def snapshot(env: Env, instance: str, name: str | None, stateful: bool, expiry: str | None,
             no_expiry: bool, reuse: bool) -> None:
    """Create an instance snapshot: its filesystem and configuration at this moment.

    Works while the instance runs (it is frozen during the copy on a dir pool). Without a
    NAME the instance's snapshots.pattern gives one (snap0, snap1...).

    \b
      mc snapshot c1 before-upgrade
      mc snapshot c1 nightly --reuse --expiry 1w
      mc info c1 ; mc restore c1 before-upgrade ; mc delete c1/before-upgrade
    """
    from cli.progress import wait_with_progress

    body = snapshot_request(name, stateful=stateful, expiry=expiry, no_expiry=no_expiry,
                            reuse=reuse)
    client, inst = _instance(env, instance)
    try:
        op = client.post(f"/1.0/instances/{url_part(inst)}/snapshots", body, wait=False)
    except ApiError as e:
        if e.status == 404 and verb_hint(inst):
            raise CliError(e.message + verb_hint(inst)) from None
        raise
    done = wait_with_progress(client, op, env.quiet, label="", key=None)
    if name is None:
        created = snapshot_from_operation(done) or snapshot_from_operation(op)
        if created:
            click.echo(f"Instance snapshot name is: {created}")


@click.command("restore")
@click.argument("instance", metavar="[<remote>:]<instance>")
@click.argument("snap", metavar="<snapshot>")
@click.option("--stateful", is_flag=True,
              help="Also restore the running state (needs CRIU, which machined lacks).")
@pass_env
def restore(env: Env, instance: str, snap: str, stateful: bool) -> None:
    """Restore an instance from one of its snapshots.

    The filesystem and the configuration go back to the snapshot's; a running instance is
    stopped and started again. Later snapshots are kept.
    """
    from cli.progress import wait_with_progress

    client, inst = _instance(env, instance)
    body: dict[str, Any] = {"restore": restore_target(inst, snap)}
    if stateful:
        body["stateful"] = True
    op = client.put(f"/1.0/instances/{url_part(inst)}", body, wait=False)
    if isinstance(op, dict) and op.get("id"):
        wait_with_progress(client, op, env.quiet, label="", key=None)

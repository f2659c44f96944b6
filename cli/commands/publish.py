"""`mc publish`: make an image of an instance (POST /1.0/images with an instance source)."""

from __future__ import annotations

from typing import Any

import click

from cli.context import Env, pass_env
from cli.errors import ApiError, CliError
from cli.params import parse_key_value, split_snapshot, url_part

COMPRESSIONS = ("bzip2", "gzip", "lz4", "lzma", "xz", "zstd", "none")
PROGRESS_KEY = "create_image_from_container_pack_progress"
STOP_TIMEOUT = 60  # seconds for a clean shutdown before --force kills the instance


def parse_args(env: Env, args: tuple[str, ...]) -> tuple[str, str, str, dict[str, str]]:
    """`<source> [<remote>:] [k=v...]` -> (source remote, source name, image remote,
    properties), as lxc reads them: a second argument without '=' is the target remote."""
    if not args:
        raise click.UsageError("Missing instance name")
    src_remote, name = env.split(args[0])
    if not name:
        raise CliError(f'Missing instance name in "{args[0]}"')
    rest = list(args[1:])
    dst_remote = src_remote
    if rest and "=" not in rest[0]:
        dst_remote, image_name = env.split(rest.pop(0))
        if image_name:
            raise CliError(f'There is no image name ("{image_name}"): did you want '
                           f"--alias {image_name}?")
    properties = dict(parse_key_value(item) for item in rest)
    return src_remote, name, dst_remote, properties


def check_compression(value: str | None) -> None:
    if value is not None and value not in COMPRESSIONS:
        raise CliError(f'Invalid compression algorithm "{value}": accepted are '
                       + ", ".join(COMPRESSIONS))


def existing_aliases(client: Any, aliases: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Which of `aliases` exist on the image server: name -> the alias ({target, ...})."""
    found = {}
    for alias in aliases:
        try:
            found[alias] = dict(client.get(f"/1.0/images/aliases/{url_part(alias)}"))
        except ApiError as e:
            if e.status != 404:
                raise
    return found


def publish_request(name: str, *, public: bool, aliases: list[str],
                    properties: dict[str, str], compression: str | None) -> dict[str, Any]:
    _, snapshot = split_snapshot(name)
    body: dict[str, Any] = {
        "source": {"type": "snapshot" if snapshot is not None else "instance", "name": name},
        "public": public,
        "aliases": [{"name": a, "description": ""} for a in aliases],
        "properties": properties,
    }
    if compression:
        body["compression_algorithm"] = compression
    return body


class _Stopped:
    """With --force: stop a running instance for the publish and start it again afterwards,
    whatever happened (an ephemeral one is made persistent while stopped, as lxc does)."""

    def __init__(self, env: Env, client: Any, name: str) -> None:
        self.env, self.client, self.name = env, client, name
        self.base = f"/1.0/instances/{url_part(name)}"
        self.stopped = False

    def stop(self, frozen: bool) -> None:
        inst = self.client.get(self.base) or {}
        ephemeral = bool(inst.get("ephemeral"))
        if ephemeral:  # stopping would delete it
            self.client.patch(self.base, {"ephemeral": False})
        self.env.say(f"Stopping {self.name}")
        try:
            # A clean shutdown, so the image holds no half-written files (a frozen instance
            # cannot shut down: it is killed).
            self.client.put(f"{self.base}/state", {"action": "stop", "timeout": STOP_TIMEOUT,
                                                   "force": frozen, "stateful": False})
            self.stopped = True
        finally:
            if ephemeral:
                self.client.patch(self.base, {"ephemeral": True})

    def start_again(self, failed: bool) -> None:
        if not self.stopped:
            return
        self.env.say(f"Starting {self.name}")
        try:
            self.client.put(f"{self.base}/state", {"action": "start", "timeout": -1,
                                                   "force": False, "stateful": False})
        except CliError as e:
            if not failed:
                raise CliError(f"The image was published, but starting {self.name} again "
                               f"failed: {e.message}") from None
            click.echo(f"Error: starting {self.name} again failed: {e.message}", err=True)


def _wait(env: Env, client: Any, op: dict[str, Any]) -> dict[str, Any]:
    from cli.progress import OperationProgress

    progress = OperationProgress("Publishing instance", key=PROGRESS_KEY,
                                 enabled=False if env.quiet else None)
    url = f"/1.0/operations/{op['id']}"
    try:
        if not progress.enabled:
            return dict(client.wait_operation(url))
        return dict(client.wait_operation(url, on_progress=progress))
    finally:
        progress.finish()


def _reuse(client: Any, replaced: dict[str, dict[str, Any]], fingerprint: str) -> None:
    """--reuse: each alias moves to the new image (never missing meanwhile), then the image it
    pointed at is deleted, as lxc does."""
    for name, alias in replaced.items():
        client.put(f"/1.0/images/aliases/{url_part(name)}",
                   {"target": fingerprint, "description": alias.get("description") or ""})
    for old in sorted({str(a.get("target")) for a in replaced.values()} - {fingerprint}):
        try:
            client.delete(f"/1.0/images/{old}")
        except ApiError as e:
            if e.status != 404:
                raise


@click.command("publish")
@click.argument("args", nargs=-1, metavar="[<remote>:]<instance>[/<snapshot>] [<remote>:] "
                "[key=value...]")
@click.option("--alias", "aliases", multiple=True, help="New alias for the image (repeatable).")
@click.option("--public", is_flag=True, help="Make the image public.")
@click.option("-f", "--force", is_flag=True,
              help="Stop the instance if it is running, and start it again afterwards.")
@click.option("--compression", metavar="ALGORITHM",
              help="bzip2, gzip, lz4, lzma, xz, zstd or none (default: the server's "
              "images.compression_algorithm).")
@click.option("--expire", metavar="DATE", help="Image expiry date (RFC 3339).")
@click.option("--reuse", is_flag=True,
              help="If an alias already exists, move it to the new image and delete the "
              "image it pointed at.")
@pass_env
def publish(env: Env, args: tuple[str, ...], aliases: tuple[str, ...], public: bool,
            force: bool, compression: str | None, expire: str | None, reuse: bool) -> None:
    """Publish an instance as an image.

    The instance must be stopped (--force stops it and starts it again afterwards). Image
    properties given as key=value override those of the image the instance came from.
    With a target remote, the image is made on the instance's server, copied to the
    target, and deleted from the instance's server.
    """
    src_remote, name, dst_remote, properties = parse_args(env, args)
    check_compression(compression)
    expires_at = _parse_expire(expire) if expire else ""
    client = env.client(src_remote)
    same = src_remote == dst_remote
    target = client if same else env.client(dst_remote)
    replaced = existing_aliases(target, aliases)
    if replaced and not reuse:
        raise CliError(f"Image aliases already exist: {', '.join(replaced)} (use --reuse to "
                       "move them to the new image)")
    new_aliases = [a for a in aliases if a not in replaced]
    fingerprint = _publish_stopped(env, client, name, force, publish_request(
        name, public=public, aliases=new_aliases if same else [], properties=properties,
        compression=compression))
    if not same:
        fingerprint = _move(env, client, target, fingerprint, public)
        from cli.commands.image import set_alias

        for alias in new_aliases:
            set_alias(target, alias, fingerprint)
    if expires_at:
        target.patch(f"/1.0/images/{fingerprint}", {"expires_at": expires_at})
    _reuse(target, replaced, fingerprint)
    click.echo(f"Instance published with fingerprint: {fingerprint}")


def _publish_stopped(env: Env, client: Any, name: str, force: bool,
                     body: dict[str, Any]) -> str:
    """Publish on the instance's server (stopping and restarting a running instance with
    --force); the new image's fingerprint."""
    inst, snapshot = split_snapshot(name)
    stopper = _Stopped(env, client, inst)
    if snapshot is None:
        state = client.get(f"/1.0/instances/{url_part(inst)}/state") or {}
        status = str(state.get("status", "")).lower()
        if status not in ("stopped", ""):
            if not force:
                raise CliError(f'Instance "{inst}" is running: stop it first, or use --force '
                               "to have it stopped and started again")
            stopper.stop(frozen=status == "frozen")
    failed = True
    try:
        op = client.post("/1.0/images", body, wait=False)
        done = _wait(env, client, op)
        fingerprint = str((done.get("metadata") or {}).get("fingerprint") or "")
        if not fingerprint:
            raise CliError("The publish operation returned no fingerprint")
        failed = False
    finally:
        stopper.start_again(failed)
    return fingerprint


def _move(env: Env, src: Any, dst: Any, fingerprint: str, public: bool) -> str:
    """Copy the published image to the target remote (relayed through mc: it is private on
    the instance's server), then delete it there, as lxc does."""
    from cli.commands.image_remote import relay

    try:
        if dst.exists(f"/1.0/images/{fingerprint}"):
            return fingerprint
        copied = relay(src, dst, fingerprint, public)
        if copied != fingerprint:
            raise CliError(f"The copy's fingerprint {copied} differs from the published "
                           f"image's {fingerprint}")
        return copied
    finally:
        src.delete(f"/1.0/images/{fingerprint}")


def _parse_expire(value: str) -> str:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f'Invalid expiry date "{value}": expected RFC 3339, e.g. '
                       "2030-01-31T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")

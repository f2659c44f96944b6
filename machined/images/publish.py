"""Publish a stopped instance as an image: its directory (a new metadata.yaml, templates/,
rootfs/) packed by GNU tar into one unified tarball, compressed by the usual tool and hashed
while it streams to disk, then registered like an upload. The plan (metadata, argv,
progress text) is pure, in images/pack.py."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machined import clock, crash
from machined.config.schema import SERVER_KEYS
from machined.db import images as db_images
from machined.db import instances as db_instances
from machined.db import settings
from machined.db import snapshots as db_snapshots
from machined.errors import BadRequest, Conflict, InternalError, NotFound
from machined.images import format as image_format
from machined.images import pack, store
from machined.state import State
from machined.storage.copy import remove_tree

if TYPE_CHECKING:
    from machined.instances.service import InstanceService

log = logging.getLogger("machined.images.publish")

CHUNK = 1 << 20
PROGRESS_KEY = "create_image_from_container_pack_progress"
PROGRESS_EVERY = 0.5  # seconds between progress updates of the operation
_STDERR_LINES = 50  # kept for the error message; tar may complain about every file
# One publish at a time, as LXD: parallel packs only fight over the disk and the CPUs.
_PUBLISH_LOCK = asyncio.Lock()


def check_publish(state: State, instances: InstanceService, name: object, *,
                  aliases: object = None, properties: object = None,
                  compression: object = None) -> pack.PublishPlan:
    """Everything a publish request can be refused for before any work starts: the API
    calls it before answering so that a bad request fails at once, not in the operation."""
    default = settings.get_all(state.db).get(
        "images.compression_algorithm", SERVER_KEYS["images.compression_algorithm"].default)
    try:
        plan = pack.plan(name, aliases=aliases, properties=properties,
                         compression=compression, server_default=default)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    argv = pack.compressor_argv(plan.compression)
    if argv is not None and shutil.which(argv[0], path=_tool_path()) is None:
        raise BadRequest(f"Compression {plan.compression!r} needs the {argv[0]} program, "
                         "which is not installed on the server")
    instance, snapshot = _split(plan.name)
    db_instances.get(state.db, instance)  # NotFound
    if snapshot is not None:
        db_snapshots.get(state.db, instance, snapshot)  # NotFound
    for alias, _ in plan.aliases:
        if _alias_exists(state, alias):
            raise Conflict(f"Image alias {alias!r} already exists: choose another name or "
                           "delete the alias first (mc publish --reuse replaces it)")
    if snapshot is None:  # a snapshot does not change: no need to stop anything
        _check_stopped(instances, plan.name)
    return plan


def _split(source: str) -> tuple[str, str | None]:
    """"c01" -> ("c01", None); "c01/snap" -> ("c01", "snap")."""
    instance, sep, snapshot = source.partition("/")
    return instance, (snapshot if sep else None)


async def publish_instance(state: State, instances: InstanceService, name: str, *,
                           public: bool, aliases: list[dict[str, Any]],
                           properties: dict[str, str], compression: str | None,
                           op: Any) -> db_images.ImageRecord:
    """Publish stopped instance `name` as a new image (not cached, never auto-updated or
    expired), with `aliases` created with it; on any failure nothing of it remains."""
    plan = check_publish(state, instances, name, aliases=aliases, properties=properties,
                         compression=compression)
    started = time.monotonic()
    if _PUBLISH_LOCK.locked():
        _progress(op, "Waiting for another publish to finish")
    async with _PUBLISH_LOCK:
        async with state.instance_locks[_split(plan.name)[0]]:
            if _split(plan.name)[1] is None:
                _check_stopped(instances, plan.name)
            upload = await _pack_instance(state, instances, plan, op)
        crash.point("image.publish.packed")
        packed = time.monotonic()
        _progress(op, "Unpacking the new image")
        record = await _register(state, upload, bool(public), plan.aliases)
    log.info("Published instance %s as image %s (%s, %d bytes, pack %.1f s, total %.1f s)",
             plan.name, record.fingerprint[:12], plan.compression, record.size,
             packed - started, time.monotonic() - started)
    instances.refill_spare(record.fingerprint)  # the first launch from it need not copy
    return db_images.get(state.db, record.fingerprint)


def _tool_path() -> str:
    return os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def _alias_exists(state: State, alias: str) -> bool:
    try:
        db_images.get_alias(state.db, alias)
    except NotFound:
        return False
    return True


def _check_stopped(instances: InstanceService, name: str) -> None:
    if instances.running(name) is not None:
        raise Conflict(f"Instance {name!r} is running: stop it first, or use "
                       "mc publish --force")


class _AliasTaken(Conflict):
    """An alias of the publish was created by someone else while it ran."""


async def _register(state: State, upload: store.Upload, public: bool,
                    aliases: tuple[tuple[str, str], ...]) -> db_images.ImageRecord:
    """The new image, registered with its aliases in one transaction: all of them or none
    and no image (a publish that fails, or a daemon killed, leaves nothing behind).
    Publishing an unchanged instance twice within a second makes the same bytes
    (creation_date counts seconds): the image that exists already is then this publish's
    result too, and gets the aliases."""
    try:
        return await store.register(state, upload, public=public,
                                    then=lambda rec: _create_aliases(state, rec, aliases))
    except _AliasTaken:
        raise
    except Conflict:
        if not db_images.exists(state.db, upload.fingerprint):
            raise
    record = db_images.get(state.db, upload.fingerprint)
    if public and not record.public:
        record.public = True
        db_images.update(state.db, record)
    with state.db.atomic():
        for alias, description in aliases:
            db_images.create_alias(state.db, alias, record.fingerprint, description)
    return record


def _create_aliases(state: State, record: db_images.ImageRecord,
                    aliases: tuple[tuple[str, str], ...]) -> None:
    try:
        for alias, description in aliases:
            db_images.create_alias(state.db, alias, record.fingerprint, description)
    except Conflict as e:
        raise _AliasTaken(f"{e.message} (created while publishing): the published image was "
                          "removed") from None


# ---------------------------------------------------------------------------- packing

async def _pack_instance(state: State, instances: InstanceService, plan: pack.PublishPlan,
                         op: Any) -> store.Upload:
    instance, snapshot = _split(plan.name)
    record = db_instances.get(state.db, instance)
    container = instances.instance_dir(instance)
    if snapshot is not None:  # its volume, with the architecture and config it recorded
        shot = db_snapshots.get(state.db, instance, snapshot)
        container = instances.pool_of(record).volume_path("snapshots", shot.volume)
        record = db_instances.InstanceRecord(name=plan.name, architecture=shot.architecture,
                                             created_at=shot.created_at, config=shot.config)
    # Staging and the tarball on the state directory's filesystem: the tarball is renamed
    # into images/ when registered.
    pool = state.storage.default
    rootfs = container / "rootfs"
    if not _is_real_dir(rootfs):
        raise NotFound(f"Root filesystem of instance {plan.name!r} is missing")
    metadata = _new_metadata(container, record, plan)
    label = plan.name.replace("/", "-")  # instance/snapshot
    staging = pool.temp_path(f"publish-{label}")
    tarball = pool.temp_path(f"publish-{label}.tar")
    try:
        staging.mkdir(mode=0o700)
        meta_path = staging / "metadata.yaml"
        meta_path.write_text(metadata.to_yaml())
        # Dated like the image: the tarball is then a function of the instance's files and
        # the creation time alone (the same publish twice gives the same fingerprint).
        os.utime(meta_path, (metadata.creation_date, metadata.creation_date))
        argv = pack.tar_argv(os.fspath(staging), os.fspath(container),
                             templates=_is_real_dir(container / "templates"))
        fingerprint, size = await _run_pipeline(argv, pack.compressor_argv(plan.compression),
                                                tarball, rootfs, op)
    except BaseException:
        tarball.unlink(missing_ok=True)
        raise
    finally:
        await asyncio.to_thread(remove_tree, staging)
    return store.Upload(meta=tarball, rootfs=None, fingerprint=fingerprint, size=size)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _new_metadata(container: Path, record: db_instances.InstanceRecord,
                  plan: pack.PublishPlan) -> image_format.ImageMetadata:
    """The metadata.yaml of the image the instance was made from (kept in its directory,
    out of the container's reach) is the base of the new one."""
    original = None
    path = container / "metadata.yaml"
    try:
        if os.path.lexists(path):
            original = image_format.load_metadata(path)
        return pack.published_metadata(
            original, architecture=record.architecture or image_format.host_arch(),
            config=record.config, properties=plan.properties, name=plan.name,
            now=clock.now())
    except image_format.ImageFormatError as e:
        raise BadRequest(f"Cannot publish instance {plan.name!r}: {e}") from None


@dataclass
class _Pipeline:
    """tar | compressor | this process (hash + write). The processes start at once; run()
    (in a thread) moves the bytes and waits for them; kill() stops everything."""
    tar_argv: list[str]
    compress_argv: list[str] | None
    target: Path
    tar_bytes: int = 0  # what tar has written, from its checkpoint lines
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stderr: dict[str, list[str]] = field(default_factory=dict)

    def start(self) -> None:
        env = pack.tool_env(_tool_path())
        common: dict[str, Any] = {"env": env, "cwd": "/", "close_fds": True,
                                  "stderr": subprocess.PIPE}
        try:
            tar = subprocess.Popen(self.tar_argv, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, **common)
            self.procs.append(tar)
            if self.compress_argv is not None:
                assert tar.stdout is not None
                comp = subprocess.Popen(self.compress_argv, stdin=tar.stdout,
                                        stdout=subprocess.PIPE, **common)
                self.procs.append(comp)
                tar.stdout.close()  # the compressor holds it: tar sees EPIPE if it dies
        except BaseException:
            self.kill()
            raise

    def run(self) -> tuple[str, int]:
        readers = [threading.Thread(target=self._read_stderr, args=(p,), daemon=True,
                                    name="publish-stderr") for p in self.procs]
        for reader in readers:
            reader.start()
        source = self.procs[-1].stdout
        assert source is not None
        try:
            writer = store.HashingWriter(self.target)
            try:
                while chunk := source.read(CHUNK):
                    writer.write(chunk)
            finally:
                writer.close()
        except OSError as e:  # a full disk, typically
            self.kill()
            raise InternalError(f"Writing the image file failed: {e.strerror or e}") from None
        except BaseException:
            self.kill()
            raise
        finally:
            source.close()
            for proc in self.procs:
                proc.wait()  # reaped here whatever happened (no zombies)
            for reader in readers:
                reader.join()
        self._check()
        return writer.digest.hexdigest(), writer.size

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        lines = self.stderr.setdefault(_tool(proc), [])
        assert proc.stderr is not None
        with proc.stderr:
            for raw in proc.stderr:
                line = raw.decode(errors="replace")
                done = pack.checkpoint_bytes(line) if proc is self.procs[0] else None
                if done is not None:
                    self.tar_bytes = done
                elif len(lines) < _STDERR_LINES:
                    lines.append(line)

    def _check(self) -> None:
        # The compressor first: when it fails, tar's own error is only the broken pipe.
        for proc in reversed(self.procs):
            if proc.returncode != 0:
                tool = _tool(proc)
                detail = pack.tar_error(self.stderr.get(tool, []))
                what = "Packing the instance" if tool == "tar" else f"Compressing with {tool}"
                raise InternalError(f"{what} failed (exit code {proc.returncode}): {detail}")

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()


def _tool(proc: subprocess.Popen[bytes]) -> str:
    return str(list(proc.args)[0])  # type: ignore[arg-type]  # always an argv list here


async def _run_pipeline(tar_argv: list[str], compress_argv: list[str] | None, target: Path,
                        rootfs: Path, op: Any) -> tuple[str, int]:
    pipeline = _Pipeline(tar_argv, compress_argv, target)
    pipeline.start()
    loop = asyncio.get_running_loop()
    stop_walk = threading.Event()
    total = loop.run_in_executor(None, _tar_estimate, rootfs, stop_walk.is_set)
    moving = loop.run_in_executor(None, pipeline.run)
    started = time.monotonic()
    try:
        # asyncio.wait never cancels what it waits for: a cancelled publish kills the
        # tools below and still waits for the thread.
        while not moving.done():
            await asyncio.wait({moving}, timeout=PROGRESS_EVERY)
            estimate = total.result() if total.done() and not total.exception() else 0
            _progress(op, pack.progress_text(pipeline.tar_bytes, estimate,
                                             time.monotonic() - started))
        return moving.result()
    except BaseException:
        # Cancelled (the daemon stopping) or failed: kill the tools, then let the thread
        # finish closing the file before the caller removes it.
        pipeline.kill()
        await asyncio.wait({moving})
        if not moving.cancelled():
            moving.exception()  # retrieved: the tools' exit after the kill says nothing new
        raise
    finally:
        stop_walk.set()


def _tar_estimate(rootfs: Path, stop: Callable[[], bool]) -> int:
    """About how many bytes tar writes for the rootfs (for the progress percentage):
    iterative (a container can nest deeper than any recursion limit), never following a
    link, not crossing into other filesystems, as tar does not."""
    try:
        device = os.lstat(rootfs).st_dev
    except OSError:
        return 0
    total = 0
    stack = [os.fspath(rootfs)]
    while stack and not stop():
        path = stack.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    total += pack.tar_size_estimate(
                        [st.st_size if stat.S_ISREG(st.st_mode) else 0])
                    if stat.S_ISDIR(st.st_mode) and st.st_dev == device:
                        stack.append(entry.path)
        except OSError:
            continue  # only an estimate
    return total


def _progress(op: Any, text: str) -> None:
    if op is not None:
        op.set_metadata(**{PROGRESS_KEY: text})

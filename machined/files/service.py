"""Files in instances: read, write, create and delete paths of a container's rootfs, running
or stopped. All I/O goes through runtime/rootfs.py (paths resolve inside the rootfs).

INLINE: lookups, directory listings, small writes and single deletes run on the event loop.
They take tens of microseconds, while a hop to a worker thread costs about 0.5 ms on this VM
(measured), which would dominate a push of many small files. Large uploads stream through a
writer thread of their own in bounded chunks; recursive deletes run in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import queue
import tarfile
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from machined import crash, locking, runtime
from machined.errors import BadRequest, Conflict, Forbidden, InternalError, NotFound
from machined.files import model
from machined.files.model import PushHeaders
from machined.instances.service import InstanceService
from machined.runtime import rootfs as inroot
from machined.state import State

log = logging.getLogger("machined.files")
WRITE_CHUNK = 1 << 20  # bytes handed to the writer thread at once
MAX_IN_FLIGHT = 4
PIPE_CHUNK = 1 << 18  # request body bytes handed to the extraction thread at once
PIPE_SLOTS = 16
MAX_SYMLINK_TARGET = 4096
BIG_DIR = 64 << 10  # st_size of a directory listed in a worker thread (ext4: ~1000 entries)

Entry = inroot.Entry


@dataclass
class ReadResult:
    """What GET serves: exactly one of fd (a file, to be closed by the caller), names (a
    directory) or target (a symlink) is set."""

    entry: Entry
    fd: int | None = None
    names: list[str] | None = None
    target: str | None = None


class FileService:
    def __init__(self, state: State, instances: InstanceService) -> None:
        self.state = state
        self.instances = instances

    def _rootfs(self, name: str) -> str:
        return os.fspath(self.instances.instance_dir(name) / "rootfs")  # NotFound if unknown

    def id_ranges(self, name: str) -> tuple[model.IdRanges, model.IdRanges]:
        """Ids the container can see. The rootfs stores container ids unshifted (the runtime
        maps them with an idmapped mount), so on-disk ids are container ids."""
        config = self.instances.load(name).expanded_config  # NotFound if unknown
        privileged = config.get("security.privileged", "").lower() in ("true", "1", "yes", "on")
        if privileged:
            full = [(0, model.MAX_ID + 1)]
            return full, full
        uid_map, gid_map = runtime.default_idmap()
        return ([(inside, count) for inside, _outside, count in uid_map],
                [(inside, count) for inside, _outside, count in gid_map])

    # -- reading ---------------------------------------------------------------------------
    async def stat(self, name: str, path: str) -> Entry:
        rootfs = self._rootfs(name)
        with _errors(name, path), inroot.Root(rootfs) as root:
            return root.lstat(path)

    async def read(self, name: str, path: str) -> ReadResult:
        rootfs = self._rootfs(name)
        with _errors(name, path), inroot.Root(rootfs) as root:
            entry, what = root.open_read(path, big_dir=BIG_DIR)
        if entry.kind == "directory" and isinstance(what, int):
            # A container can fill a directory with millions of entries: listing one that
            # large inline would stall every other request (see INLINE).
            with _errors(name, path):
                what = await asyncio.to_thread(inroot.list_dir, what)
        if isinstance(what, int):
            return ReadResult(entry, fd=what)
        if isinstance(what, list):
            return ReadResult(entry, names=what)
        if isinstance(what, str):
            return ReadResult(entry, target=what)
        raise BadRequest(f"{path} is not a file, directory or symlink; only those can be read")

    # -- writing ---------------------------------------------------------------------------
    def check(self, name: str, headers: PushHeaders) -> str:
        """Validate a push before any byte of it is read; the rootfs path."""
        if headers.uid is not None or headers.gid is not None:
            uids, gids = self.id_ranges(name)
            model.check_ids(headers, uids, gids)
        return self._rootfs(name)

    async def push_small(self, name: str, path: str, headers: PushHeaders, data: bytes) -> None:
        """A whole (small) body at once, written inline (see INLINE)."""
        async with self._writing(name):
            self._push_small(name, path, headers, data)
        _log_push(name, path, headers, len(data))

    def _push_small(self, name: str, path: str, headers: PushHeaders, data: bytes) -> None:
        rootfs = self.check(name, headers)
        if path == "/" and headers.type != "directory":
            raise BadRequest("/ is the instance's root directory")

        with _errors(name, path), inroot.Root(rootfs) as root:
            if headers.type == "directory":
                _make_dir(root, path, headers)
            elif headers.type == "symlink":
                _make_symlink(root, path, headers, data)
            else:
                append = headers.write == "append"
                writer = root.begin_file(path, append=append)
                try:
                    writer.write(data)
                except BaseException:
                    writer.abort()
                    raise
                perms = _file_perms(writer.existing, headers, append)
                crash.point("files.push.written")
                writer.commit(perms.uid, perms.gid, perms.mode)

    async def push_stream(self, name: str, path: str, headers: PushHeaders,
                          body: AsyncIterator[bytes]) -> int:
        """A file body streamed from `body` in bounded chunks (never all in memory); the
        number of bytes written. If the body fails midway nothing is left behind (overwrite
        mode) and the target is untouched."""
        if headers.type != "file":
            raise BadRequest(f"A {headers.type} is created from a small request body")
        async with self._writing(name):
            written = await self._push_stream(name, path, headers, body)
        _log_push(name, path, headers, written)
        return written

    async def _push_stream(self, name: str, path: str, headers: PushHeaders,
                           body: AsyncIterator[bytes]) -> int:
        rootfs = self.check(name, headers)
        append = headers.write == "append"

        with _errors(name, path), inroot.Root(rootfs) as root:
            writer = root.begin_file(path, append=append)
        # One thread of its own writes this file, so receiving the next chunk overlaps with
        # writing the last one (two cores), and writes stay in order. At most
        # MAX_IN_FLIGHT chunks wait for it: memory stays bounded, however large the file.
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-push")
        in_flight: deque[asyncio.Future[None]] = deque()
        try:
            pending: list[bytes] = []
            size = 0
            async for chunk in body:
                pending.append(chunk)
                size += len(chunk)
                if size >= WRITE_CHUNK:
                    in_flight.append(loop.run_in_executor(pool, _write, writer, pending,
                                                          name, path))
                    pending, size = [], 0
                    if len(in_flight) >= MAX_IN_FLIGHT:
                        await in_flight.popleft()
            if pending:
                in_flight.append(loop.run_in_executor(pool, _write, writer, pending, name,
                                                      path))
            while in_flight:
                await in_flight.popleft()
            perms = _file_perms(writer.existing, headers, append)
            await loop.run_in_executor(pool, _commit, writer, perms, name, path)
        except BaseException:
            # Let queued writes finish (they are quick) before the fd they use is closed.
            pool.shutdown(wait=True, cancel_futures=True)
            for future in in_flight:  # their failures are this one's consequences
                if future.done() and not future.cancelled():
                    future.exception()
            writer.abort()  # closes fds and unlinks the temporary file
            raise
        finally:
            pool.shutdown(wait=False)
        return writer.written

    async def push_archive(self, name: str, path: str, headers: PushHeaders,
                           body: AsyncIterator[bytes]) -> int:
        """machined extension (`mc file push -r` in one request): create the directory `path`
        as a directory POST would, then extract the tar stream `body` below it. Each member
        is written exactly like a single POST of it (same rootfs calls, so paths resolve
        inside the rootfs), with the member's own mode, uid and gid; X-LXD-modify-perm uid/gid
        apply to members too, mode only to `path`. Only files, directories and symlinks are
        accepted; absolute names, '..' and members below a symlink made by an earlier member
        are refused. Returns the number of members."""
        async with self._writing(name):
            count = await self._push_archive(name, path, headers, body)
        log.info("Pushed a tree of %d entries to %s in instance %s", count, path, name)
        return count

    async def _push_archive(self, name: str, path: str, headers: PushHeaders,
                            body: AsyncIterator[bytes]) -> int:
        rootfs = self.check(name, headers)
        uids, gids = self.id_ranges(name)
        with _errors(name, path), inroot.Root(rootfs) as root:
            _make_dir(root, path, headers)
        loop = asyncio.get_running_loop()
        pipe = _BodyPipe(loop)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-archive")
        job = loop.run_in_executor(pool, _extract, rootfs, name, path, headers, pipe, uids,
                                   gids)
        job.add_done_callback(_retrieve)
        try:
            pending: list[bytes] = []
            size = 0
            async for chunk in body:
                pending.append(chunk)
                size += len(chunk)
                if size >= PIPE_CHUNK:
                    if not await pipe.feed(b"".join(pending)):
                        break  # the extraction ended early: a failure, or trailing padding
                    pending, size = [], 0
            else:
                if pending:
                    await pipe.feed(b"".join(pending))
            pipe.end()
            count = await job
            async for _padding in body:  # what follows the end-of-archive marker
                pass
            return count
        except BaseException:
            pipe.end(failed=True)
            raise
        finally:
            pool.shutdown(wait=False)

    async def delete(self, name: str, path: str, recursive: bool) -> None:
        if path == "/":
            raise BadRequest("Refusing to delete the instance's root directory")
        async with self._writing(name):
            rootfs = self._rootfs(name)

            def work() -> None:
                with _errors(name, path), inroot.Root(rootfs) as root:
                    root.remove(path, recursive=recursive)

            # A tree can be large: only a recursive delete is worth a worker thread.
            await asyncio.to_thread(work) if recursive else work()
        log.info("Deleted %s%s in instance %s", path, " (recursively)" if recursive else "",
                 name)

    def _writing(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Writes hold the instance's lock (a synchronous request: a brief wait, then 409),
        so a push never lands in a volume being deleted, restored, moved, snapshotted or
        published: it happens wholly before or after."""
        return locking.hold(self.state.instance_locks[name], name, "Writing files")


def _log_push(name: str, path: str, headers: PushHeaders, size: int) -> None:
    what = {"directory": "a directory", "symlink": "a symlink"}.get(headers.type, "a file")
    extra = f" ({size} bytes)" if headers.type == "file" else ""
    log.info("Pushed %s to %s in instance %s%s", what, path, name, extra)


def _retrieve(future: asyncio.Future[int]) -> None:
    """The job's outcome is awaited on success; on a failed upload nobody awaits it."""
    if not future.cancelled():
        future.exception()


class _BodyPipe(io.RawIOBase):
    """The request body as a blocking stream for the extraction thread: the event loop feeds
    chunks, at most PIPE_SLOTS waiting (bounded memory); the thread reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.items: queue.SimpleQueue[bytes | None | BaseException] = queue.SimpleQueue()
        self.slots = asyncio.Semaphore(PIPE_SLOTS)
        self.stopped = False
        self.buf = memoryview(b"")

    # event loop side
    async def feed(self, data: bytes) -> bool:
        """False once the reader has stopped (it failed): feed no more."""
        await self.slots.acquire()
        if self.stopped:
            return False
        self.items.put(data)
        return True

    def end(self, failed: bool = False) -> None:
        self.items.put(ConnectionResetError("The upload was cut short") if failed else None)

    # thread side
    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buf:
            item = self.items.get()
            if item is None:
                return 0
            if isinstance(item, BaseException):
                raise item
            self.buf = memoryview(item)
            self.loop.call_soon_threadsafe(self.slots.release)
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

    def stop(self) -> None:
        """The reader gives up: wake a feeder waiting for a slot."""
        self.stopped = True
        for _ in range(PIPE_SLOTS + 1):
            self.loop.call_soon_threadsafe(self.slots.release)


def _extract(rootfs: str, name: str, dest: str, headers: PushHeaders, pipe: _BodyPipe,
             uids: model.IdRanges, gids: model.IdRanges) -> int:
    modify = headers.modify - {"mode"}
    links: set[tuple[str, ...]] = set()
    count = 0
    try:
        with (inroot.Root(rootfs) as root,
              io.BufferedReader(pipe, WRITE_CHUNK) as stream,
              tarfile.open(fileobj=stream, mode="r|", encoding="utf-8",
                           errors="surrogateescape", tarinfo=model.ArchiveInfo) as tar):
            for info in tar:
                parts = model.archive_parts(info.name)
                if model.under_link(parts, links):
                    raise BadRequest(f"Archive member {info.name!r} is below a symlink the "
                                     "archive made, which is never followed")
                path = dest.rstrip("/") + "/" + "/".join(parts)
                member = PushHeaders(uid=info.uid, gid=info.gid, mode=info.mode & 0o7777,
                                     type="file", modify=modify)
                model.check_ids(member, uids, gids)
                with _errors(name, path):
                    _extract_member(root, tar, info, path, member)
                if info.issym():
                    links.add(parts)
                elif not info.isdir():  # a directory member leaves a link there as it is
                    links.discard(parts)
                count += 1
    except tarfile.TarError as e:
        raise BadRequest(f"The uploaded archive is not a readable tar stream ({e})") from None
    finally:
        pipe.stop()
    return count


def _extract_member(root: inroot.Root, tar: tarfile.TarFile, info: tarfile.TarInfo, path: str,
                    member: PushHeaders) -> None:
    if info.isdir():
        _make_dir(root, path, member)
    elif info.issym():
        _make_symlink(root, path, member, os.fsencode(info.linkname))
    elif info.isreg():
        data = tar.extractfile(info)
        assert data is not None
        writer = root.begin_file(path)
        try:
            while chunk := data.read(WRITE_CHUNK):
                writer.write(chunk)
            if writer.written != info.size:
                raise BadRequest(f"Archive member {info.name!r} is truncated")
        except BaseException:
            writer.abort()
            raise
        perms = _file_perms(writer.existing, member, False)
        writer.commit(perms.uid, perms.gid, perms.mode)
    else:
        raise BadRequest(f"Archive member {info.name!r} is not a file, directory or symlink; "
                         "only those are accepted")


def _write(writer: inroot.FileWriter, chunks: list[bytes], name: str, path: str) -> None:
    with _errors(name, path):
        writer.write_chunks(chunks)


def _commit(writer: inroot.FileWriter, perms: model.Perms, name: str, path: str) -> None:
    crash.point("files.push.written")
    with _errors(name, path):
        writer.commit(perms.uid, perms.gid, perms.mode)


def _file_perms(existing: Entry | None, headers: PushHeaders, append: bool) -> model.Perms:
    if existing is None or existing.kind != "file":
        return model.new_perms(headers, model.DEFAULT_FILE_MODE)
    if append:  # the same inode: change only what X-LXD-modify-perm asks for
        return model.changed_perms(headers)
    return model.replaced_perms(headers, existing.uid, existing.gid, existing.mode)


def _make_dir(root: inroot.Root, path: str, headers: PushHeaders) -> None:
    perms = model.new_perms(headers, model.DEFAULT_DIR_MODE)
    existing = root.make_dir(path, perms.mode, perms.uid, perms.gid)
    if existing is None:
        return
    if existing.kind != "directory":
        raise Conflict(f"{path} exists and is a {existing.kind}, not a directory")
    change = model.changed_perms(headers)  # an existing directory is kept as it is, unless
    if change != model.Perms(-1, -1, -1):  # X-LXD-modify-perm asks for changes
        root.set_dir_perms(path, change.uid, change.gid, change.mode)


def _make_symlink(root: inroot.Root, path: str, headers: PushHeaders, data: bytes) -> None:
    if len(data) > MAX_SYMLINK_TARGET:
        raise BadRequest(f"A symlink target is at most {MAX_SYMLINK_TARGET} bytes")
    try:
        target = data.decode("utf-8", "surrogateescape")
    except UnicodeDecodeError:  # pragma: no cover - surrogateescape accepts any bytes
        raise BadRequest("Invalid symlink target") from None
    if not target:
        raise BadRequest("A symlink needs its target as the request body")
    perms = model.new_perms(headers, 0o777)
    root.make_symlink(path, target, perms.uid, perms.gid)


@contextlib.contextmanager
def _errors(name: str, path: str) -> Iterator[None]:
    """OSError from the rootfs -> a MachinedError that names the path."""
    try:
        yield
    except OSError as e:
        raise _translate(e, name, path) from None


_MESSAGES = {
    errno.ENOENT: "{path}: no such file or directory in instance {name!r}",
    errno.ENOTDIR: "{path}: a component of the path is not a directory",
    errno.EISDIR: "{path} is a directory",
    errno.ELOOP: "{path}: too many levels of symbolic links",
    errno.EXDEV: "{path} crosses a mount point",
    errno.ENOTEMPTY: "Directory {path} is not empty (delete it recursively with -f)",
    errno.ENAMETOOLONG: "{path}: file name too long",
    errno.EEXIST: "{path} already exists",
}


def _translate(e: OSError, name: str, path: str) -> Exception:
    template = _MESSAGES.get(e.errno or 0)
    if isinstance(e, inroot.RootfsError):  # rootfs.py's own sentence, meant for the user
        message = f"{path}: {e.strerror}"
    elif template:
        message = template.format(path=path, name=name)
    else:
        message = f"{path}: {e.strerror or e}"
    if e.errno == errno.ENOENT:
        return NotFound(message)
    if e.errno == errno.EEXIST:
        return Conflict(message)
    if e.errno in (errno.EPERM, errno.EACCES):
        return Forbidden(message)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        return InternalError(message)
    return BadRequest(message)

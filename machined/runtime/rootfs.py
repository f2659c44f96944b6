"""Writing into a container's rootfs from the host. The rootfs is hostile: its symlinks and
`..` are resolved inside it by the kernel (openat2 RESOLVE_IN_ROOT), never on the host."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from dataclasses import dataclass

from machined.runtime import linux


def read_link(rootfs: str, path: str) -> str | None:
    """The target of `path` if it is a symlink (its parents resolved inside rootfs)."""
    try:
        with Root(rootfs) as root:
            parent, name = root.parent(path)
    except OSError:
        return None
    try:
        return os.readlink(name, dir_fd=parent) if name else None
    except OSError:
        return None
    finally:
        os.close(parent)


def write_file(rootfs: str, path: str, data: bytes, *, mode: int = 0o644, uid: int = 0,
               gid: int = 0, only_if_missing: bool = False) -> bool:
    """Write `path` (as the container sees it) atomically through Root.begin_file: a
    temporary file renamed over the target, which replaces even a symlink without following
    it. Returns False when only_if_missing and the path exists. The parent must exist."""
    with Root(rootfs) as root:
        if only_if_missing:
            parent, name = root.parent(path)
            try:
                if _lstat_at(parent, name) is not None:
                    return False
            finally:
                os.close(parent)
        writer = root.begin_file(path)
        try:
            writer.write(data)
        except BaseException:
            writer.abort()
            raise
        writer.commit(uid, gid, mode)
        return True


# --- Confined file access for `mc file` -------------------------------------------------------
# Every path below is a path as the container sees it. Parents are opened with openat2
# (RESOLVE_IN_ROOT: symlinks and `..` resolve inside the rootfs; NO_MAGICLINKS: no /proc
# jumps; NO_XDEV: no host mount under the rootfs is crossed); the final component is then used
# relative to that parent fd and never followed. Objects are checked with fstat on an O_PATH fd
# before they are opened for I/O, so a FIFO or device node planted in the rootfs is never
# opened. Nothing here joins a path onto the rootfs path.

_CONFINED = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS | linux.RESOLVE_NO_XDEV
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_OPEN_DIRS = 64  # directory fds a recursive delete holds at once


class RootfsError(OSError):
    """A refusal of this module's own; its message is meant for the user as it is."""


@dataclass(frozen=True)
class Entry:
    """What lstat says about a path: kind is file, directory, symlink or other."""

    kind: str
    mode: int  # permission bits, with setuid/setgid/sticky
    uid: int
    gid: int
    size: int
    mtime: float


def _entry(st: os.stat_result) -> Entry:
    if stat.S_ISREG(st.st_mode):
        kind = "file"
    elif stat.S_ISDIR(st.st_mode):
        kind = "directory"
    elif stat.S_ISLNK(st.st_mode):
        kind = "symlink"
    else:
        kind = "other"
    return Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime)


def _components(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any("\0" in p for p in parts):
        raise RootfsError(errno.EINVAL, f"Path contains a NUL byte: {path!r}")
    return parts


def _reopen(fd: int, flags: int) -> int:
    """Open the object an O_PATH fd names with real access. /proc/self/fd/N is our own fd
    table (the host's /proc), so this reaches exactly the inode that was checked.
    O_NONBLOCK: container root owns its files and may hold a lease on one (F_SETLEASE);
    a blocking open would wait out lease-break-time (45 s) with the daemon's event loop.
    Instead the open fails at once with EWOULDBLOCK (the break is started); O_NONBLOCK has
    no other effect on regular files and directories."""
    try:
        return os.open(f"/proc/self/fd/{fd}",
                       flags | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except BlockingIOError:
        raise RootfsError(errno.EWOULDBLOCK, "in use: a process of the instance holds a lease "
                          "on it, which is being broken now; try again") from None


class Root:
    """A container's root filesystem opened once; use as a context manager."""

    def __init__(self, rootfs: str) -> None:
        # The rootfs directory itself must not be a symlink (CVE-2026-48749).
        self.fd = os.open(rootfs, _DIR_PATH | os.O_NOFOLLOW)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_dir(self, parts: list[str]) -> int:
        """O_PATH fd of a directory, resolved inside the root."""
        rel = "/".join(parts) or "."
        for _attempt in range(8):
            try:
                return linux.openat2(self.fd, rel, _DIR_PATH, _CONFINED)
            except OSError as e:
                # EAGAIN: a rename raced with `..` resolution; the kernel asks us to retry.
                if e.errno != errno.EAGAIN:
                    raise
        raise RootfsError(errno.EAGAIN, f"Could not resolve {rel!r}: the tree kept changing")

    def parent(self, path: str) -> tuple[int, str]:
        """(O_PATH fd of the parent directory, last component); the component is "" for the
        root itself, whose "parent" is then the root."""
        parts = _components(path)
        if not parts:
            return os.dup(self.fd), ""
        return self.open_dir(parts[:-1]), parts[-1]

    def _object(self, parent: int, name: str) -> int:
        """O_PATH fd of `name` in `parent`, never following it (a symlink stays a symlink)."""
        if not name:
            return os.dup(self.fd)
        return os.open(name, _NOFOLLOW_PATH, dir_fd=parent)

    # -- reading ---------------------------------------------------------------------------
    def lstat(self, path: str) -> Entry:
        parent, name = self.parent(path)
        try:
            obj = self._object(parent, name)
        finally:
            os.close(parent)
        try:
            return _entry(os.fstat(obj))
        finally:
            os.close(obj)

    def open_read(self, path: str, big_dir: int = -1
                  ) -> tuple[Entry, int | list[str] | str | None]:
        """(entry, what to serve): a readable fd for a file, sorted names for a directory,
        the target text for a symlink, None for anything else (FIFOs, devices, sockets are
        never opened). A directory larger than big_dir bytes (st_size, when >= 0) comes as an
        fd for list_dir() instead: listing millions of entries takes seconds."""
        parent, name = self.parent(path)
        try:
            obj = self._object(parent, name)
        finally:
            os.close(parent)
        try:
            entry = _entry(os.fstat(obj))
            if entry.kind == "file":
                return entry, _reopen(obj, os.O_RDONLY)
            if entry.kind == "directory":
                fd = _reopen(obj, os.O_RDONLY | os.O_DIRECTORY)
                return entry, fd if 0 <= big_dir < entry.size else list_dir(fd)
            if entry.kind == "symlink":
                return entry, os.readlink("", dir_fd=obj)
            return entry, None
        finally:
            os.close(obj)

    # -- writing ---------------------------------------------------------------------------
    def begin_file(self, path: str, append: bool = False) -> FileWriter:
        """A writer for `path`. Overwrite: a temporary file in the parent directory, renamed
        over the target by commit() (atomic; a symlink at the target is replaced, never
        followed). Append: the existing regular file opened O_APPEND (a new one if missing)."""
        parent, name = self.parent(path)
        try:
            if not name:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            existing = _lstat_at(parent, name)
            if existing is not None and existing.kind == "directory":
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            if append and existing is not None:
                if existing.kind != "file":
                    raise RootfsError(errno.EINVAL, "Cannot append: not a regular file", path)
                obj = os.open(name, _NOFOLLOW_PATH, dir_fd=parent)
                try:
                    if not stat.S_ISREG(os.fstat(obj).st_mode):
                        raise RootfsError(errno.EINVAL, "Cannot append: not a regular file", path)
                    fd = _reopen(obj, os.O_WRONLY | os.O_APPEND)
                finally:
                    os.close(obj)
                return FileWriter(parent, name, fd, None, existing)
            tmp, fd = _create_temp(parent, name)
            return FileWriter(parent, name, fd, tmp, existing, replace=True)
        except BaseException:
            os.close(parent)
            raise

    def make_dir(self, path: str, mode: int, uid: int, gid: int) -> Entry | None:
        """Create a directory; None when made, else the entry already there (which is left
        alone: the caller decides whether to change it)."""
        parent, name = self.parent(path)
        try:
            if not name:
                return _entry(os.fstat(self.fd))
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                existing = _lstat_at(parent, name)
                if existing is None:  # removed meanwhile
                    raise
                if existing.kind == "symlink":  # mkdir -p accepts a link to a directory,
                    existing = self._resolved(path) or existing  # resolved inside the root
                return existing
            fd = os.open(name, _DIR_READ, dir_fd=parent)  # ELOOP if swapped for a symlink
            try:
                _apply(fd, uid, gid, mode)
            finally:
                os.close(fd)
            return None
        finally:
            os.close(parent)

    def make_symlink(self, path: str, target: str, uid: int, gid: int) -> None:
        """Create or replace a symlink (atomically, by renaming a new one over the old)."""
        if not target or "\0" in target:
            raise RootfsError(errno.EINVAL, "A symlink target must be non-empty and without NUL")
        parent, name = self.parent(path)
        try:
            if not name:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            existing = _lstat_at(parent, name)
            if existing is not None and existing.kind == "directory":
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            for _attempt in range(8):
                tmp = _temp_name()
                try:
                    os.symlink(target, tmp, dir_fd=parent)
                    break
                except FileExistsError:
                    continue
            else:
                raise RootfsError(errno.EEXIST, "Could not pick a temporary name", path)
            try:
                os.chown(tmp, uid, gid, dir_fd=parent, follow_symlinks=False)
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                _unlink_quiet(parent, tmp)
                raise
        finally:
            os.close(parent)

    def _resolved(self, path: str) -> Entry | None:
        """The directory `path` leads to, links followed inside the root; None if it is not
        one."""
        try:
            fd = self.open_dir(_components(path))
        except OSError:
            return None
        try:
            return _entry(os.fstat(fd))
        finally:
            os.close(fd)

    def set_dir_perms(self, path: str, uid: int, gid: int, mode: int) -> None:
        """chown/chmod the directory `path` leads to (links followed inside the root, as
        chmod does); -1 leaves a field alone."""
        obj = self.open_dir(_components(path))
        try:
            fd = _reopen(obj, os.O_RDONLY | os.O_DIRECTORY)
        finally:
            os.close(obj)
        try:
            _apply(fd, uid, gid, mode)
        finally:
            os.close(fd)

    def remove(self, path: str, recursive: bool = False) -> None:
        """unlink a file or symlink, rmdir an empty directory, or (recursive) a whole tree,
        always relative to directory fds opened without following links."""
        parent, name = self.parent(path)
        try:
            if not name:
                raise RootfsError(errno.EPERM, "Refusing to remove the root directory")
            existing = _lstat_at(parent, name)
            if existing is None:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
            if existing.kind != "directory":
                os.unlink(name, dir_fd=parent)
            elif recursive:
                remove_tree_at(parent, name)
            else:
                os.rmdir(name, dir_fd=parent)
        finally:
            os.close(parent)


def list_dir(fd: int) -> list[str]:
    """Sorted names in the directory open as fd, which is closed."""
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


class FileWriter:
    """A file being written into the rootfs (see Root.begin_file). Use write(), then
    commit() or abort(); the writer owns the parent fd and closes everything."""

    def __init__(self, parent: int, name: str, fd: int, tmp: str | None,
                 existing: Entry | None, replace: bool = False) -> None:
        self.parent, self.name, self.fd, self.tmp = parent, name, fd, tmp
        self.existing = existing  # what was at the target when the transfer began
        self.replace = replace  # False: appending to the target itself
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.written += n

    def write_chunks(self, chunks: list[bytes]) -> None:
        """Write several buffers with as few syscalls (and no joining copy) as possible."""
        views = [memoryview(c) for c in chunks if c]
        while views:
            n = os.writev(self.fd, views[:1024])  # IOV_MAX
            self.written += n
            while n and views:
                if n >= len(views[0]):
                    n -= len(views.pop(0))
                else:
                    views[0] = views[0][n:]
                    n = 0

    def commit(self, uid: int, gid: int, mode: int) -> None:
        """Set ownership then mode (chown clears setuid bits), then rename into place.
        -1 leaves a field as it is."""
        try:
            _apply(self.fd, uid, gid, mode)
            if self.replace and self.tmp is None:  # unnamed (O_TMPFILE): link it in
                if _link_at(self.fd, self.parent, self.name):
                    return
                self.tmp = _link_temp(self.fd, self.parent, self.name)
            if self.replace:
                os.rename(self.tmp, self.name, src_dir_fd=self.parent, dst_dir_fd=self.parent)
                self.tmp = None
        finally:
            self.abort()

    def abort(self) -> None:
        """Close everything; a temporary file that was not committed is removed."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp is not None:
            _unlink_quiet(self.parent, self.tmp)
            self.tmp = None
        if self.parent >= 0:
            os.close(self.parent)
            self.parent = -1


def _apply(fd: int, uid: int, gid: int, mode: int) -> None:
    if uid >= 0 or gid >= 0:
        os.fchown(fd, uid, gid)
    if mode >= 0:
        os.fchmod(fd, mode)


def _lstat_at(parent: int, name: str) -> Entry | None:
    try:
        return _entry(os.stat(name, dir_fd=parent, follow_symlinks=False))
    except FileNotFoundError:
        return None


def _temp_name() -> str:
    # Short, so that a target name of 255 bytes still has a temporary sibling.
    return f".mc-{uuid.uuid4().hex[:12]}"


def _create_temp(parent: int, name: str) -> tuple[str | None, int]:
    """The file a write goes to before it replaces `name`: unnamed (O_TMPFILE) where the
    filesystem can, so a daemon killed while writing it leaves nothing in the rootfs (it is
    linked in only when complete); else a hidden temporary name (None: unnamed)."""
    try:
        return None, os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600,
                             dir_fd=parent)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    for _attempt in range(8):
        tmp = _temp_name()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=parent)
        except FileExistsError:
            continue
        return tmp, fd
    raise RootfsError(errno.EEXIST, f"Could not pick a temporary name next to {name!r}")


def _link_at(fd: int, parent: int, name: str) -> bool:
    """Give unnamed file `fd` the name `name` if nothing has it (one atomic step)."""
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=parent, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


def _link_temp(fd: int, parent: int, name: str) -> str:
    """Give unnamed file `fd` a temporary name next to `name` (to be renamed over it)."""
    for _attempt in range(8):
        tmp = _temp_name()
        if _link_at(fd, parent, tmp):
            return tmp
    raise RootfsError(errno.EEXIST, f"Could not pick a temporary name next to {name!r}")


def _unlink_quiet(parent: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=parent)


def remove_tree_at(top_parent: int, top_name: str) -> None:
    """rm -r without recursion in Python: a stack of directory fds, each opened O_NOFOLLOW
    relative to its parent. A directory swapped for a symlink fails to open (ELOOP/ENOTDIR)
    and the link itself is unlinked; nothing is ever resolved by name from the top. Any depth
    (a container can nest directories far deeper than PATH_MAX or Python's recursion limit):
    at most MAX_OPEN_DIRS levels are open at once; a directory further down is first moved
    up into the top directory (renamed between fds) and removed from there."""
    stack: list[tuple[int, str, list[str]]] = []

    def enter(parent: int, name: str) -> None:
        fd = os.open(name, _DIR_READ, dir_fd=parent)
        try:
            with os.scandir(fd) as it:
                names = [e.name for e in it]
        except BaseException:
            os.close(fd)
            raise
        stack.append((fd, name, names))

    try:
        enter(top_parent, top_name)
        while stack:
            fd, name, names = stack[-1]
            if not names:
                stack.pop()
                os.close(fd)
                os.rmdir(name, dir_fd=stack[-1][0] if stack else top_parent)
                continue
            child = names.pop()
            try:
                os.unlink(child, dir_fd=fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                if len(stack) >= MAX_OPEN_DIRS:
                    _move_up(fd, child, stack[0])
                    continue
                try:
                    enter(fd, child)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                        raise
                    # Replaced by a link or file meanwhile: unlink that instead.
                    _unlink_quiet(fd, child)
    finally:
        for fd, _name, _names in stack:
            os.close(fd)


def _move_up(fd: int, child: str, top: tuple[int, str, list[str]]) -> None:
    moved = _temp_name()
    try:
        os.rename(child, moved, src_dir_fd=fd, dst_dir_fd=top[0])
    except FileNotFoundError:
        return  # gone meanwhile
    top[2].append(moved)

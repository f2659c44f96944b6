"""Writing into a container's rootfs from the host. The rootfs is hostile: its symlinks and
`..` are resolved inside it by the kernel (openat2 RESOLVE_IN_ROOT), never on the host."""

from __future__ import annotations

import os
import uuid

from machined.runtime import linux

_RESOLVE = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS


def _open_parent(rootfs: str, path: str) -> tuple[int, str]:
    """(fd of the parent directory resolved inside rootfs, last component)."""
    parent_path, name = os.path.split("/" + path.lstrip("/"))
    if name in ("", ".", ".."):
        raise OSError(22, f"Not a file path: {path}")
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent = linux.openat2(root, parent_path.lstrip("/") or ".",
                               os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, _RESOLVE)
    finally:
        os.close(root)
    return parent, name


def read_link(rootfs: str, path: str) -> str | None:
    """The target of `path` if it is a symlink (its parents resolved inside rootfs)."""
    try:
        parent, name = _open_parent(rootfs, path)
    except OSError:
        return None
    try:
        return os.readlink(name, dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(parent)


def write_file(rootfs: str, path: str, data: bytes, *, mode: int = 0o644, uid: int = 0,
               gid: int = 0, only_if_missing: bool = False) -> bool:
    """Write `path` (as the container sees it) atomically: a temporary file in the same
    directory, then a rename over the target, which replaces even a symlink without following
    it. Returns False when only_if_missing and the path exists. The parent must exist."""
    parent, name = _open_parent(rootfs, path)
    try:
        if only_if_missing:
            try:
                os.stat(name, dir_fd=parent, follow_symlinks=False)
                return False
            except FileNotFoundError:
                pass
        tmp = f".{name}.machined-{uuid.uuid4().hex[:8]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb", closefd=False) as fh:
                fh.write(data)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            os.unlink(tmp, dir_fd=parent)
            raise
        finally:
            os.close(fd)
        return True
    finally:
        os.close(parent)

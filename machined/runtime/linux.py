"""The only ctypes module: thin wrappers over the Linux syscalls the runtime needs.

Standalone on purpose (stdlib only, no package imports): helper.py and execd.py load it by path
from their own directory; keep it small. Every
failure raises OSError whose message names the syscall and the path it was given.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS = {
    "ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "remount": 32, "bind": 4096, "move": 8192,
    "rec": 16384, "private": 1 << 18, "slave": 1 << 19, "relatime": 1 << 21,
}
MNT_DETACH = 2

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_IDMAP = 0x00100000

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10

PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_PIDFD_SEND_SIGNAL = 424
_SYS_OPENAT2 = 437
_SYS_MOUNT_SETATTR = 442


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _fail(syscall: str, path: object = "") -> OSError:
    err = ctypes.get_errno()
    hint = " (kernel too old?)" if err == 38 else ""
    return OSError(err, f"{syscall}({path}) failed: {os.strerror(err)}{hint}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) < 0:
        raise _fail("unshare", hex(flags))


def setns(fd: int, flags: int) -> None:
    if _libc.setns(ctypes.c_int(fd), ctypes.c_int(flags)) < 0:
        raise _fail("setns", f"fd {fd}, {hex(flags)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)) < 0:
        raise _fail("mount", f"{source} on {target} type {fstype}")


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), ctypes.c_int(flags)) < 0:
        raise _fail("umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    if _libc.pivot_root(_b(new_root), _b(put_old)) < 0:
        raise _fail("pivot_root", new_root)


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, ctypes.c_size_t(len(raw))) < 0:
        raise _fail("sethostname", name)


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)) < 0:
        raise _fail("prctl", option)


def _syscall(name: str, path: object, nr: int, *args: object) -> int:
    ret = _libc.syscall(ctypes.c_long(nr), *args)
    if ret < 0:
        raise _fail(name, path)
    return int(ret)


def open_tree(dfd: int, path: str, flags: int) -> int:
    return _syscall("open_tree", path, _SYS_OPEN_TREE, ctypes.c_int(dfd), _b(path),
                    ctypes.c_uint(flags))


def mount_setattr_idmap(fd: int, userns_fd: int, path: str = "") -> None:
    attr = _MountAttr(attr_set=MOUNT_ATTR_IDMAP, userns_fd=userns_fd)
    _syscall("mount_setattr", path or f"fd {fd}", _SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"",
             ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE), ctypes.byref(attr),
             ctypes.c_size_t(ctypes.sizeof(attr)))


def mount_setattr(fd: int, attr_set: int, userns_fd: int = 0, recursive: bool = False,
                  path: str = "") -> None:
    """Set MOUNT_ATTR_* bits on the mount (tree, with recursive) that fd refers to."""
    attr = _MountAttr(attr_set=attr_set, userns_fd=userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _syscall("mount_setattr", path or f"fd {fd}", _SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"",
             ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))


def move_mount(from_fd: int, to_path: str, to_dfd: int = AT_FDCWD) -> None:
    _syscall("move_mount", to_path, _SYS_MOVE_MOUNT, ctypes.c_int(from_fd), b"",
             ctypes.c_int(to_dfd), _b(to_path), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))


OPENAT2_ATTEMPTS = 16


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """With RESOLVE_IN_ROOT/BENEATH the kernel answers EAGAIN when any rename or mount on the
    system raced with a `..` step (openat2(2): "the caller should retry"); busy hosts (other
    containers starting) hit that. Bounded, because an O_NONBLOCK open of a leased file
    answers EAGAIN too and must still fail."""
    how = _OpenHow(flags=flags, mode=mode, resolve=resolve)
    for attempt in range(OPENAT2_ATTEMPTS):
        try:
            return _syscall("openat2", path, _SYS_OPENAT2, ctypes.c_int(dirfd), _b(path),
                            ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        except BlockingIOError:
            if attempt == OPENAT2_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def pidfd_open(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except OSError as e:
        raise OSError(e.errno, f"pidfd_open({pid}) failed: {os.strerror(e.errno or 0)}") from None


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _syscall("pidfd_send_signal", f"fd {pidfd}, signal {sig}", _SYS_PIDFD_SEND_SIGNAL,
             ctypes.c_int(pidfd), ctypes.c_int(sig), None, ctypes.c_uint(0))


def mount_flags(names: tuple[str, ...] | list[str]) -> int:
    """Turn the flag names used by spec.MountOp into MS_* bits."""
    value = 0
    for name in names:
        value |= MS[name]
    return value


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), or None if pid is gone or a
    zombie (whoever reaps it, the process is over)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])

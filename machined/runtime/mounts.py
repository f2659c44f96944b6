"""The daemon's own mount namespace, and the only place storage pools are mounted.

machined enters a mount namespace of its own at start (before any thread exists: unshare
of CLONE_NEWNS fails in a process whose threads share its filesystem context), made a slave
of the host's: host mounts still propagate in, the pools machined mounts never show on the
host, and container helpers, which inherit the namespace, keep a pool mounted for their
containers after the daemon exits. Loop files are attached by mount(8) with autoclear, so a
loop device lives exactly as long as some namespace still mounts its pool, and mount(8)
reuses the device already attached to the same file when the daemon starts again.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from machined.runtime import linux
from machined.sys.run import CommandError, run

_entered = False


def enter_private_mount_namespace() -> None:
    """unshare(CLONE_NEWNS), then make every mount a slave: nothing mounted from here on
    propagates back to the host."""
    global _entered
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS["rec"] | linux.MS["slave"])
    _entered = True


def in_private_namespace() -> bool:
    return _entered


def mount_pool(source: Path, target: Path, fstype: str, options: str = "") -> None:
    """Mount a pool's filesystem (a block device, or a regular file through a loop device)
    on `target`. Refused outside the daemon's own namespace: a pool mount on the host would
    outlive the daemon and be visible to everyone."""
    if not _entered:
        raise OSError(errno.EPERM, f"Refusing to mount {source} on {target}: machined is not "
                      "in its own mount namespace")
    opts = [o for o in options.split(",") if o]
    if stat.S_ISREG(os.stat(source).st_mode):
        opts.insert(0, "loop")
    argv = ["mount", "-t", fstype]
    if opts:
        argv += ["-o", ",".join(opts)]
    try:
        run([*argv, "--", os.fspath(source), os.fspath(target)])
    except CommandError as e:
        raise OSError(errno.EIO, f"Failed mounting {source} on {target}: {_first_line(e)}"
                      ) from None


def remount(target: Path, options: str) -> None:
    """New mount options on a mounted pool (those btrfs can change while mounted)."""
    try:
        run(["mount", "-o", ",".join(["remount", *[o for o in options.split(",") if o]]),
             "--", os.fspath(target)])
    except CommandError as e:
        raise OSError(errno.EIO, f"Failed remounting {target}: {_first_line(e)}") from None


def _first_line(e: CommandError) -> str:
    """mount(8) says what failed first, then adds a hint about dmesg."""
    lines = [ln.strip() for ln in e.stderr.splitlines() if ln.strip()]
    return lines[0] if lines else f"exit code {e.returncode}"


def is_mounted(target: Path) -> bool:
    """Whether `target` is a mount point in this namespace (by /proc/self/mountinfo, which,
    unlike comparing st_dev, also sees a filesystem mounted on a directory of itself)."""
    want = os.fspath(target)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4 and _unescape(fields[4]) == want:
                return True
    return False


def unmount(target: Path) -> None:
    """Unmount if mounted; a mount still busy in this namespace is detached (it goes once
    unused; its loop device is freed then by autoclear)."""
    while is_mounted(target):
        try:
            linux.umount2(os.fspath(target))
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            linux.umount2(os.fspath(target), linux.MNT_DETACH)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)

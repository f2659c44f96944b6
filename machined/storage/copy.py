"""Faithful tree copies and removals, shared by the pool drivers.

A copy is `cp -a --preserve=xattr --reflink=auto`: coreutils cp reflinks (FICLONE) where the
filesystem can, uses copy_file_range otherwise, keeps holes, hard links, owners, modes
(setuid/setgid after chown), timestamps, device nodes, fifos, sockets and symlinks, POSIX
ACLs and every xattr including security.capability (set after chown, which would clear it).
`--preserve=xattr` is repeated on purpose: under plain -a, cp drops xattrs the target
filesystem refuses without an error; named explicitly, such a failure fails the copy.

cp runs as a child that gets SIGKILL when the daemon dies (setpriv --pdeathsig), from the
event loop thread (PR_SET_PDEATHSIG fires when the spawning thread exits), through
sys.run.run_async: cancelling the copy kills cp. Whatever it leaves lives in a pool's tmp/.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from machined.runtime import rootfs as inroot
from machined.sys.run import run, run_async

CP = ["cp", "-a", "--preserve=xattr", "--reflink=auto", "--no-target-directory"]


def copy_argv(source: Path, target: Path) -> list[str]:
    """When `target` is an existing directory (a btrfs subvolume made for the copy), cp
    fills it with the contents of `source` and gives it source's owner, mode and times."""
    return ["setpriv", "--pdeathsig", "KILL", *CP, "--", os.fspath(source), os.fspath(target)]


async def copy_tree(source: Path, target: Path) -> None:
    """Copy, then write the copy back (syncfs) before anyone relies on it: a crash must not
    leave a renamed-in volume with holes, and a container booting on it must not wait
    behind its dirty pages. On failure the caller removes `target`."""
    await run_async(copy_argv(source, target))
    await sync_filesystem(target)


async def sync_filesystem(path: Path) -> None:
    await run_async(["sync", "--file-system", os.fspath(path)])


def sync_filesystem_blocking(path: Path) -> None:
    run(["sync", "--file-system", os.fspath(path)])


def fsync_dir(path: Path) -> None:
    """Make a rename into `path` durable before a database row names its result (the pool
    may be on another filesystem than the database, so the DB's fsync orders nothing)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Works on directory fds, never follows symlinks inside the tree, and removes a tree of
    any depth (not shutil.rmtree: it recurses, and a container can nest directories deeper
    than Python's recursion limit, which made the instance undeletable and, once in tmp/,
    stopped the daemon from starting)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            inroot.remove_tree_at(parent, path.name)
        finally:
            os.close(parent)


async def remove_tree_async(path: Path) -> None:
    await asyncio.to_thread(remove_tree, path)

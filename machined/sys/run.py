"""The one way machined runs other programs. Errors name the command, its exit code and stderr."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence


class CommandError(Exception):
    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(f"Command {argv[0]!r} failed with exit code {returncode}: {tail}")


def run(argv: Sequence[str], *, input: bytes | None = None, cwd: str | None = None,
        env: dict[str, str] | None = None, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(list(argv), input=input, cwd=cwd, env=env, capture_output=True,
                              close_fds=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        raise CommandError(argv, -9, "", f"timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout.decode(errors="replace"),
                           proc.stderr.decode(errors="replace"))
    return proc


async def run_async(argv: Sequence[str], *, input: bytes | None = None,
                    check: bool = True) -> tuple[int, bytes, bytes]:
    """As run(); cancelling the caller kills the program (a daemon stopping must not wait)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await proc.communicate(input)
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    rc = proc.returncode if proc.returncode is not None else -1
    if check and rc != 0:
        raise CommandError(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"))
    return rc, out, err

"""Non-blocking reads and writes on pipe and pty fds from the event loop."""

from __future__ import annotations

import asyncio
import errno
import os


async def read_chunk(fd: int, size: int = 65536) -> bytes:
    """Next chunk, or b'' at end of stream (EIO on a pty master means the slave side closed)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno == errno.EIO:
                return b""
            raise
        ready = loop.create_future()
        loop.add_reader(fd, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


async def write_all(fd: int, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
            view = view[written:]
            continue
        except BlockingIOError:
            pass
        ready = loop.create_future()
        loop.add_writer(fd, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_writer(fd)


def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)

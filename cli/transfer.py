"""Streamed request bodies (a file, or multipart/form-data around files) and the upload progress
line. Nothing here reads a whole file into memory."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


class Body:
    """A request body made of byte strings and files, with its length known up front."""

    def __init__(self, parts: list[bytes | Path], content_type: str) -> None:
        self.parts = parts
        self.content_type = content_type
        self.length = sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in parts)

    def chunks(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
                continue
            with part.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk


def file_body(path: Path) -> Body:
    return Body([path], "application/octet-stream")


def multipart_body(files: list[tuple[str, Path]], boundary: str | None = None) -> Body:
    """multipart/form-data with one part per (field name, file), file bodies streamed."""
    boundary = boundary or os.urandom(16).hex()
    parts: list[bytes | Path] = []
    for name, path in files:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts += [head.encode(), path, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return Body(parts, f"multipart/form-data; boundary={boundary}")


class Progress:
    """`Transferring image: 45% (120.3MB/s)` on a TTY stderr, rewritten in place; silent
    otherwise."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self.shown = 0.0

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-6)
        speed = self.done / elapsed / 1e6
        if not self.total:  # length unknown (stdin, a pipe): how much so far, not "100%"
            return f"{self.label}: {self.done / 1e6:.1f}MB ({speed:.1f}MB/s)"
        percent = min(100, int(self.done * 100 / self.total))  # totals may be estimates (tar)
        return f"{self.label}: {percent}% ({speed:.1f}MB/s)"

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.shown >= 0.2 or (self.total and self.done >= self.total):
            self.shown = now
            sys.stderr.write("\r\033[K" + self.line(now))
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

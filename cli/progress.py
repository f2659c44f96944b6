"""Progress of a server-side operation (an image download): `Retrieving image: rootfs: 45%
(12.3 MB/s)` as one line rewritten in place on a TTY stderr; nothing otherwise or with -q."""

from __future__ import annotations

import sys
from typing import Any


class OperationProgress:
    def __init__(self, label: str = "Retrieving image", key: str = "download_progress",
                 enabled: bool | None = None) -> None:
        self.label = label
        self.key = key
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.shown = ""

    def text(self, op: dict[str, Any]) -> str:
        """The line for an operation ("" when it reports no progress yet)."""
        value = (op.get("metadata") or {}).get(self.key)
        return f"{self.label}: {value}" if value else ""

    def __call__(self, op: dict[str, Any]) -> None:
        line = self.text(op)
        if not self.enabled or not line or line == self.shown:
            return
        self.shown = line
        sys.stderr.write("\r\033[K" + line)
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        self.shown = ""


def wait_with_progress(client: Any, op: dict[str, Any], quiet: bool = False,
                       label: str = "Retrieving image") -> dict[str, Any]:
    """Wait for operation `op` (as returned by a POST with wait=False), showing its
    download progress; the finished operation."""
    progress = OperationProgress(label, enabled=False if quiet else None)
    url = f"/1.0/operations/{op['id']}"
    try:
        if not progress.enabled:
            return client.wait_operation(url)
        return client.wait_operation(url, on_progress=progress)
    finally:
        progress.finish()

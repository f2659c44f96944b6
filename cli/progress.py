"""Progress of a server-side operation (an image download, a copy): `Retrieving image: rootfs:
45% (12.3 MB/s)` as one line rewritten in place on a TTY stderr; nothing otherwise or with -q.

The operation reports it as a string under a metadata key ending in `_progress`
(`download_progress`, `create_image_from_container_pack_progress`, `copy_progress`, as LXD
names them); key=None shows whichever such key the operation carries."""

from __future__ import annotations

import sys
from typing import Any


class OperationProgress:
    def __init__(self, label: str = "Retrieving image", key: str | None = "download_progress",
                 enabled: bool | None = None) -> None:
        self.label = label
        self.key = key
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.shown = ""

    def text(self, op: dict[str, Any]) -> str:
        """The line for an operation ("" when it reports no progress yet)."""
        metadata = op.get("metadata") or {}
        if not isinstance(metadata, dict):
            return ""
        if self.key is not None:
            value = metadata.get(self.key)
        else:
            keys = sorted(k for k, v in metadata.items()
                          if k.endswith("_progress") and isinstance(v, str) and v)
            value = metadata[keys[0]] if keys else ""
        if not value:
            return ""
        return f"{self.label}: {value}" if self.label else str(value)

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
                       label: str = "Retrieving image",
                       key: str | None = "download_progress") -> dict[str, Any]:
    """Wait for operation `op` (as returned by a request with wait=False), showing its
    progress (`key`, or any `*_progress` key when None); the finished operation."""
    progress = OperationProgress(label, key=key, enabled=False if quiet else None)
    url = f"/1.0/operations/{op['id']}"
    try:
        if not progress.enabled:
            return client.wait_operation(url)
        return client.wait_operation(url, on_progress=progress)
    finally:
        progress.finish()

"""History of finished operations (the live ones are in memory, api/operations.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Database

KEPT_DAYS = 7


def record(db: Database, op: dict[str, Any]) -> None:
    db.execute("INSERT OR REPLACE INTO operations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               [op["id"], op["class"], op["description"], op["status_code"],
                json.dumps(op["resources"]), op["err"], op["created_at"], op["updated_at"]])


def prune(db: Database, days: int = KEPT_DAYS) -> None:
    """History, not state: keep `days` of it (every exec adds a row)."""
    cutoff = (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    db.execute("DELETE FROM operations WHERE updated_at < ?", [cutoff])

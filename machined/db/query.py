"""`machined sql`: one operator statement run in the daemon's own connection (so it sees
what the daemon sees and its writes go through the daemon's transaction rules). Statements
that return rows (SELECT, PRAGMA, ... RETURNING) give columns and rows; others the number
of rows they changed."""

from __future__ import annotations

import base64
import sqlite3
import time
from typing import Any

from sqlite_utils import Database

from machined.errors import BadRequest

TIME_LIMIT = 10.0  # seconds: the connection is the daemon's, its event loop waits meanwhile
MAX_ROWS = 100_000  # a listing, not an export: sqlite3 on a copy of the file does that
_CHECK_EVERY = 10_000  # SQLite VM instructions between two looks at the clock


def run(db: Database, query: str) -> dict[str, Any]:
    """{"columns": [...], "rows": [[...]]} or {"rows_affected": n}; BadRequest with SQLite's
    own sentence for anything it refuses. A statement that leaves a transaction open
    (BEGIN, SAVEPOINT) is rolled back and refused: the connection is shared with the
    daemon, which must not find itself inside someone else's transaction."""
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("The query must be a non-empty SQL statement")
    conn = db.conn
    was_open = conn.in_transaction
    deadline = time.monotonic() + TIME_LIMIT
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _CHECK_EVERY)
    try:
        cursor = conn.execute(query)
        if cursor.description is None:
            result: dict[str, Any] = {"rows_affected": max(cursor.rowcount, 0)}
        else:
            rows = cursor.fetchmany(MAX_ROWS + 1)
            if len(rows) > MAX_ROWS:
                raise BadRequest(f"The query returns more than {MAX_ROWS} rows: add a LIMIT, "
                                 "or query a copy of the database file with sqlite3")
            result = {"columns": [d[0] for d in cursor.description],
                      "rows": [[_value(v) for v in row] for row in rows]}
        cursor.close()
    except sqlite3.OperationalError as e:
        if str(e) == "interrupted":
            raise BadRequest(f"The query ran longer than {TIME_LIMIT:g} s and was "
                             "interrupted") from None
        raise BadRequest(f"SQL error: {e}") from None
    except (sqlite3.DatabaseError, sqlite3.Warning, sqlite3.ProgrammingError) as e:
        raise BadRequest(f"SQL error: {e}") from None
    finally:
        conn.set_progress_handler(None, 0)
        left_open = conn.in_transaction and not was_open
        if left_open:
            conn.rollback()
    if left_open:
        raise BadRequest("Transactions are not supported: each statement runs and commits "
                         "on its own (the transaction was rolled back)")
    return result


def _value(value: Any) -> Any:
    """JSON-ready: a BLOB as {"base64": ...}."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value

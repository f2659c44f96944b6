"""`machined shutdown` and `machined sql`: operator commands that talk to the running daemon
over its unix socket (`call`: one request, stdlib http.client)."""

from __future__ import annotations

import errno
import fcntl
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

from machined.paths import Paths


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("machined", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class NotRunning(Exception):
    pass


def call(paths: Paths, method: str, path: str, body: Any = None,
         timeout: float | None = 60) -> tuple[int, Any]:
    """One request to the daemon's unix socket: (HTTP status, decoded JSON envelope).
    Raises NotRunning when nothing answers on the socket."""
    conn = _UnixConnection(os.fspath(paths.socket), timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, path, body=data, headers=headers)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
                raise NotRunning(f"machined is not running (nothing answers on "
                                 f"{paths.socket})") from None
            raise
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else {}
        except ValueError:
            return resp.status, {"error": raw.decode(errors="replace")[:200]}
    finally:
        conn.close()


def shutdown(paths: Paths, timeout: float | None, if_host_stopping: bool) -> int:
    """Ask the daemon to stop its instances for host power-off and exit; returns once it
    is gone. With `if_host_stopping` (systemd's ExecStop) it does so only while the host
    is shutting down: a service stop or restart leaves the instances running."""
    if if_host_stopping:
        state = host_state()
        if state != "stopping":
            print(f"The host is not shutting down (systemctl is-system-running: {state}): "
                  "instances keep running")
            return 0
    if timeout is not None and timeout <= 0:
        print(f"Error: --timeout must be a positive number of seconds, not {timeout:g}",
              file=sys.stderr)
        return 1
    try:
        status, answer = call(paths, "PUT", "/internal/shutdown")
    except NotRunning as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"Error: could not reach machined on {paths.socket}: {e}", file=sys.stderr)
        return 1
    if status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else None
        print(f"Error: {message or f'HTTP {status}'}", file=sys.stderr)
        return 1
    if not wait_until_gone(paths, timeout):
        print(f"Error: machined did not exit within {timeout:g} s (it is still stopping "
              "instances; see its log)", file=sys.stderr)
        return 1
    return 0


def host_state() -> str:
    """What `systemctl is-system-running` prints ("stopping" during a power-off), or why
    it could not say."""
    try:
        proc = subprocess.run(["systemctl", "is-system-running"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    return proc.stdout.strip() or f"unknown (exit status {proc.returncode})"


def wait_until_gone(paths: Paths, timeout: float | None) -> bool:
    """Wait for the daemon process to exit: it holds machined.lock (flock) for its whole
    life, and the kernel drops the lock only when the process is gone."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        fd = os.open(paths.root / "machined.lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)  # at once: a new daemon must not find it held
            return True
    finally:
        os.close(fd)


def sql(paths: Paths, query: str, fmt: str) -> int:
    """Run one SQL statement in the running daemon's database connection (POST
    /internal/sql) and print its rows (table, json or csv) or the number of rows it
    changed. Errors: one line on stderr, exit status 1."""
    try:
        status, answer = call(paths, "POST", "/internal/sql", {"query": query})
    except NotRunning as e:
        print(f"Error: {e}: start it, or read a copy of {paths.database} with sqlite3",
              file=sys.stderr)
        return 1
    except PermissionError:
        print(f"Error: permission denied on {paths.socket}: run machined sql as root",
              file=sys.stderr)
        return 1
    except OSError as e:
        print(f"Error: could not reach machined on {paths.socket}: {e}", file=sys.stderr)
        return 1
    if status >= 400 or not isinstance(answer, dict) or answer.get("type") == "error":
        message = answer.get("error") if isinstance(answer, dict) else None
        print(f"Error: {message or f'HTTP {status}'}", file=sys.stderr)
        return 1
    sys.stdout.write(format_result(answer.get("metadata") or {}, fmt))
    return 0


def format_result(result: dict[str, Any], fmt: str) -> str:
    """The text `machined sql` prints for a /internal/sql result (pure)."""
    if "columns" not in result:
        count = int(result.get("rows_affected", 0))
        if fmt == "json":
            return json.dumps({"rows_affected": count}) + "\n"
        return f"Rows affected: {count}\n"
    columns, rows = list(result["columns"]), list(result["rows"])
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows],
                          indent=2) + "\n"
    if fmt == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v, csv=True) for v in row] for row in rows])
        return out.getvalue()
    return _table(columns, [[_cell(v) for v in row] for row in rows])


def _cell(value: Any, csv: bool = False) -> str:
    if value is None:
        return "" if csv else "NULL"
    if isinstance(value, dict) and "base64" in value:  # a BLOB
        return "base64:" + str(value["base64"])
    text = str(value)
    # A table cell stays on one line (PEM certificates, JSON with newlines).
    return text if csv else text.replace("\n", "\\n").replace("\t", " ")


def _table(columns: list[str], rows: list[list[str]]) -> str:
    """An aligned table with borders, as `lxd sql` prints."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([rule, line(columns), rule, *map(line, rows), rule]) + "\n"

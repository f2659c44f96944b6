"""HTTP/1.1 over machined's unix socket, speaking LXD envelopes.

A deliberately small HTTP client on a raw socket (persistent connection, Content-Length or
chunked responses, streamed request bodies): http.client pulls in the email package and costs
more start-up time than all of mc's own code.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from cli.errors import ApiError, CliError

# Annotations only: importing typing costs ~5 ms of mc exec's start-up; uploads' helpers are
# needed by neither mc exec nor mc list.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

    from cli.transfer import Body, Progress

DEFAULT_DIR = "/var/lib/machined"


def socket_path() -> str:
    return os.path.join(os.environ.get("MACHINED_DIR") or DEFAULT_DIR, "unix.socket")


def connect_unix(path: str) -> socket.socket:
    """A connected unix stream socket, or a CliError that says how to fix it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise CliError(
            f'machined is not running (no socket at {path}); start it with "machined &"'
        ) from None
    except PermissionError:
        sock.close()
        raise CliError(f"Permission denied on {path}; run mc as root") from None
    return sock


class Response:
    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(
                f"Invalid response from machined (HTTP {self.status})", self.status
            ) from None


def read_head(rfile: BinaryIO) -> tuple[int, str, dict[str, str]]:
    """Status line and headers (names lower-cased)."""
    line = rfile.readline(65537)
    if not line:
        raise ConnectionResetError("connection closed by machined")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ApiError(f"Invalid HTTP status line from machined: {line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        line = rfile.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), (parts[2] if len(parts) > 2 else ""), headers


def read_body(rfile: BinaryIO, headers: dict[str, str], method: str, status: int) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(rfile.readline(1026).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += _read_exact(rfile, size)
            rfile.readline(3)
    if "content-length" in headers:
        return _read_exact(rfile, int(headers["content-length"]))
    return rfile.read()


def _read_exact(rfile: BinaryIO, n: int) -> bytes:
    data = rfile.read(n)
    if len(data) != n:
        raise ConnectionResetError("connection closed by machined mid-response")
    return data


class Client:
    """One keep-alive connection to machined. Methods return the envelope's metadata; for an
    async operation with wait=True they return the finished operation object."""

    def __init__(self, path: str | None = None, debug: bool = False) -> None:
        self.path = path or socket_path()
        self.debug = debug
        self.sock: socket.socket | None = None
        self.rfile: BinaryIO | None = None

    # -- transport -------------------------------------------------------------------------
    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.rfile = None

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        if self.sock is None or self.rfile is None:
            self.sock = connect_unix(self.path)
            self.rfile = self.sock.makefile("rb")
        return self.sock, self.rfile

    def _log(self, text: str) -> None:
        if self.debug:
            print(f"DEBUG: {text}", file=sys.stderr)

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Body | None = None,
        headers: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> Response:
        """One request; retried once on a fresh connection if a kept-alive one went stale."""
        for attempt in (0, 1):
            reused = self.sock is not None
            try:
                return self._exchange(method, path, body, headers or {}, progress)
            except (ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if not reused or attempt or (progress is not None and progress.done):
                    raise CliError(f"Lost the connection to machined: {e}") from None
        raise AssertionError("unreachable")

    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | Body | None,
        headers: dict[str, str],
        progress: Progress | None,
    ) -> Response:
        sock, rfile = self._connect()
        length = 0 if body is None else (len(body) if isinstance(body, bytes) else body.length)
        head = [f"{method} {path} HTTP/1.1", "Host: localhost", "User-Agent: mc"]
        if body is not None:
            head.append(f"Content-Length: {length}")
            if not isinstance(body, bytes):
                head.append(f"Content-Type: {body.content_type}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        self._log(f"{method} {path}")
        if isinstance(body, bytes) and self.debug and body:
            self._log(f"  {body[:2000].decode(errors='replace')}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, bytes):
            sock.sendall(data + body)
        else:
            sock.sendall(data)
            if body is not None:
                self._send_body(sock, body, progress)
        status, reason, rheaders = read_head(rfile)
        payload = read_body(rfile, rheaders, method, status)
        self._log(f"  -> {status} {payload[:2000].decode(errors='replace')}")
        if rheaders.get("connection", "").lower() == "close":
            self.close()
        return Response(status, reason, rheaders, payload)

    @staticmethod
    def _send_body(sock: socket.socket, body: Body, progress: Progress | None) -> None:
        sent = 0
        try:
            for chunk in body.chunks():
                sock.sendall(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress.update(len(chunk))
        except (BrokenPipeError, ConnectionResetError):
            return  # machined refused early: its error response is read next
        finally:
            if progress is not None:
                progress.finish()
        if sent != body.length:
            raise CliError("A file changed size while it was being uploaded")

    # -- envelopes -------------------------------------------------------------------------
    def query(
        self,
        method: str,
        path: str,
        data: Any = None,
        *,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """The whole envelope; an error envelope or HTTP error raises ApiError."""
        hdrs = dict(headers or {})
        payload: bytes | Body | None = body
        if data is not None:
            payload = json.dumps(data).encode()
            hdrs["Content-Type"] = "application/json"
        resp = self.raw(method, path, body=payload, headers=hdrs, progress=progress)
        if resp.status >= 400:
            raise error_from(resp)
        envelope = resp.json()
        if not isinstance(envelope, dict):
            raise ApiError("Invalid response from machined", resp.status)
        if envelope.get("type") == "error":
            raise ApiError(
                str(envelope.get("error") or "Unknown error"),
                int(envelope.get("error_code") or resp.status),
            )
        return envelope

    def call(self, method: str, path: str, data: Any = None, *, wait: bool = True) -> Any:
        envelope = self.query(method, path, data)
        if envelope.get("type") == "async" and wait:
            return self.wait_operation(str(envelope.get("operation")))
        return envelope.get("metadata")

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, data: Any = None, *, wait: bool = True) -> Any:
        return self.call("POST", path, {} if data is None else data, wait=wait)

    def put(self, path: str, data: Any, *, wait: bool = True) -> Any:
        return self.call("PUT", path, data, wait=wait)

    def patch(self, path: str, data: Any, *, wait: bool = True) -> Any:
        return self.call("PATCH", path, data, wait=wait)

    def delete(self, path: str, *, wait: bool = True) -> Any:
        return self.call("DELETE", path, wait=wait)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True

    def wait_operation(self, op_url: str, timeout: float | None = None) -> dict[str, Any]:
        """Block on /wait; a failed or cancelled operation raises ApiError(op["err"])."""
        url = op_url.rstrip("/") + "/wait"
        if timeout is not None:
            url += f"?timeout={timeout:g}"
        op = self.get(url)
        check_operation(op)
        return dict(op)


def check_operation(op: Any) -> None:
    if isinstance(op, dict) and op.get("status_code") in (400, 401):
        raise ApiError(str(op.get("err") or f"Operation {op.get('status', 'failed')}"), 400)


def error_from(resp: Response) -> ApiError:
    try:
        envelope = json.loads(resp.body)
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and envelope.get("error"):
        return ApiError(str(envelope["error"]), int(envelope.get("error_code") or resp.status))
    text = resp.body.decode(errors="replace").strip().splitlines()
    detail = text[0][:200] if text else resp.reason
    return ApiError(f"machined answered HTTP {resp.status}: {detail}", resp.status)

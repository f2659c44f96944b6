"""HTTP/1.1 over machined's unix socket (or TLS to an https remote), speaking LXD envelopes.

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
    from collections.abc import Callable
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
    async operation with wait=True they return the finished operation object.

    With `url` (https://host:port) the connection is TLS, verified by `ssl_context` (see
    cli/tls.py: a pinned certificate or the system CA store, maybe our client certificate);
    ssl is imported only then, so the unix socket path starts as fast as before."""

    def __init__(self, path: str | None = None, debug: bool = False, *,
                 url: str | None = None, ssl_context: Any = None) -> None:
        self.url = url
        self.ssl_context = ssl_context
        self.path = path or ("" if url else socket_path())
        self.debug = debug
        self.sock: socket.socket | None = None
        self.rfile: BinaryIO | None = None
        self.peer = url or "machined"  # how errors name the other end
        self.host = url.split("://", 1)[1].rstrip("/") if url else "localhost"  # Host header
        self._answered = False  # has this connection delivered a response yet?
        self._drops: tuple[type[BaseException], ...] = (ConnectionResetError, BrokenPipeError)

    # -- transport -------------------------------------------------------------------------
    def close(self) -> None:
        if self.rfile is not None:
            self.rfile.close()  # else the socket's fd stays open until the reader is collected
        if self.sock is not None:
            self.sock.close()
        self.sock = self.rfile = None

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        if self.sock is None or self.rfile is None:
            if self.url:
                import ssl

                from cli import tls

                self.sock = tls.connect(self.url, self.ssl_context)
                self._drops = (ConnectionResetError, BrokenPipeError, ssl.SSLError)
            else:
                self.sock = connect_unix(self.path)
            self.rfile = self.sock.makefile("rb")
            self._answered = False
        return self.sock, self.rfile

    def _lost(self, e: BaseException) -> CliError:
        """The error for a connection that broke. A fresh TLS connection that presented our
        certificate and closes before any answer is the server refusing that certificate."""
        if self.url and not self._answered and getattr(self.ssl_context, "client_cert", False):
            from cli import tls

            self.close()
            return tls.untrusted_client_error(self.url)
        self.close()
        return CliError(f"Lost the connection to {self.peer}: {e}")

    def _head(self, rfile: BinaryIO) -> tuple[int, str, dict[str, str]]:
        head = read_head(rfile)
        self._answered = True
        return head

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
            except self._drops as e:
                if not reused or attempt or (progress is not None and progress.done):
                    raise self._lost(e) from None
                self.close()
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
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "User-Agent: mc"]
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
        status, reason, rheaders = self._head(rfile)
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

    def wait_operation(
        self,
        op_url: str,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Block on /wait; a failed or cancelled operation raises ApiError(op["err"]).
        With on_progress, wait in half-second slices and hand it the running operation
        after each (its metadata carries e.g. download_progress)."""
        url = op_url.rstrip("/") + "/wait"
        if on_progress is not None:
            while True:
                op = self.get(url + "?timeout=0.5")
                if not isinstance(op, dict) or int(op.get("status_code") or 0) >= 200:
                    break  # 200 success, 400 failure, 401 cancelled
                on_progress(op)
        else:
            if timeout is not None:
                url += f"?timeout={timeout:g}"
            op = self.get(url)
        check_operation(op)
        return dict(op)


    # -- streamed file transfers (mc file push/pull) -------------------------------------
    def upload(
        self,
        path: str,
        source: BinaryIO,
        length: int | None,
        headers: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """POST a body streamed from `source`: sendfile(2) from a regular file of known length,
        else chunked transfer encoding (stdin, pipes). Never holds the body in memory.
        Returns the envelope; an error raises ApiError."""
        start = source.tell() if length is not None and source.seekable() else None
        for attempt in (0, 1):
            if self.sock is not None and start is None:
                self.close()  # an unseekable body cannot be resent: never risk a stale socket
            reused = self.sock is not None
            try:
                resp = self._upload_once(path, source, length, headers or {}, progress)
                break
            except self._drops as e:
                if not reused or attempt or start is None:
                    raise self._lost(e) from None
                self.close()
                source.seek(start)
            except BaseException:
                self.close()  # a half-sent request leaves the connection unusable
                raise
        if resp.status >= 400:
            raise error_from(resp)
        envelope = resp.json()
        if isinstance(envelope, dict) and envelope.get("type") == "error":
            raise ApiError(str(envelope.get("error")), int(envelope.get("error_code") or 400))
        return envelope if isinstance(envelope, dict) else {}

    def _upload_once(
        self,
        path: str,
        source: BinaryIO,
        length: int | None,
        headers: dict[str, str],
        progress: Progress | None,
    ) -> Response:
        sock, rfile = self._connect()
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}", "User-Agent: mc"]
        if "Content-Type" not in headers:
            head.append("Content-Type: application/octet-stream")
        head.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        self._log(f"POST {path} {headers}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        try:
            if length is None:
                _send_chunked(sock, source, progress)
            else:
                _send_file(sock, source, length, progress)
        except (BrokenPipeError, ConnectionResetError):
            pass  # machined refused early: its error response is read next
        finally:
            if progress is not None:
                progress.finish()
        status, reason, rheaders = self._head(rfile)
        payload = read_body(rfile, rheaders, "POST", status)
        self._log(f"  -> {status} {payload[:2000].decode(errors='replace')}")
        if rheaders.get("connection", "").lower() == "close":
            self.close()
        return Response(status, reason, rheaders, payload)

    def download(self, path: str, sink: Any, progress: Progress | None = None) -> Response:
        """GET whose body, when it is raw file data, is streamed into what `sink(headers)`
        returns (a binary file object); sink may return None to get the body in memory
        instead (symlink targets). JSON bodies (directory listings) stay in memory. An HTTP
        error raises ApiError."""
        for attempt in (0, 1):
            reused = self.sock is not None
            sock, rfile = self._connect()
            try:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: mc\r\n\r\n"
                             .encode("latin-1"))
                status, reason, headers = self._head(rfile)
                break
            except self._drops as e:
                if not reused or attempt:
                    raise self._lost(e) from None
                self.close()
        self._log(f"GET {path} -> {status}")
        out = None
        raw_data = not headers.get("content-type", "").startswith("application/json")
        if status < 400 and raw_data and "content-length" in headers:
            out = sink(headers)
        try:
            if out is None:
                body = read_body(rfile, headers, "GET", status)
            else:
                body = b""
                _copy_body(rfile, out, int(headers["content-length"]), progress)
        except BaseException:
            self.close()  # a body left half-read leaves the connection unusable
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        resp = Response(status, reason, headers, body)
        if status >= 400:
            raise error_from(resp)
        return resp


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


TRANSFER_CHUNK = 1 << 20
SENDFILE_SLICE = 8 << 20  # progress is updated between sendfile calls


def _send_file(
    sock: socket.socket, source: BinaryIO, length: int, progress: Progress | None
) -> None:
    """Exactly `length` bytes of a regular file, zero-copy."""
    offset = source.tell()
    sent = 0
    while sent < length:
        n = sock.sendfile(source, offset + sent, min(SENDFILE_SLICE, length - sent))
        if n == 0:
            raise CliError("A file changed size while it was being uploaded")
        sent += n
        if progress is not None:
            progress.update(n)


def _send_chunked(sock: socket.socket, source: BinaryIO, progress: Progress | None) -> None:
    read = getattr(source, "read1", source.read)  # send what a pipe has, don't wait to fill
    while chunk := read(TRANSFER_CHUNK):
        sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        if progress is not None:
            progress.update(len(chunk))
    sock.sendall(b"0\r\n\r\n")


def _copy_body(rfile: BinaryIO, out: BinaryIO, length: int, progress: Progress | None) -> None:
    try:
        buf = bytearray(TRANSFER_CHUNK)
        view = memoryview(buf)
        left = length
        while left:
            n = rfile.readinto(view[: min(left, TRANSFER_CHUNK)])  # type: ignore[attr-defined]
            if not n:
                raise ConnectionResetError("connection closed by machined mid-transfer")
            out.write(view[:n])
            left -= n
            if progress is not None:
                progress.update(n)
    finally:
        if progress is not None:
            progress.finish()

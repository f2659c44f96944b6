"""HTTP framing, upload bodies and the websocket codec, without a daemon (in-process sockets)."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.client import Client, check_operation, read_body, read_head
from cli.errors import ApiError
from cli.transfer import Progress, file_body, multipart_body
from cli.ws import BINARY, CLOSE, TEXT, WebSocket, accept_key, encode_frame, mask


def test_read_chunked_and_sized_bodies() -> None:
    f = io.BytesIO(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
        b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\n\r\n"
    )
    status, reason, headers = read_head(f)
    assert (status, reason, headers["x-a"]) == (200, "OK", "b")
    assert read_body(f, headers, "GET", status) == b"Wikipedia "
    f = io.BytesIO(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef")
    status, _, headers = read_head(f)
    assert read_body(f, headers, "GET", status) == b"abc"


def test_bad_status_line() -> None:
    with pytest.raises(ApiError):
        read_head(io.BytesIO(b"garbage\r\n\r\n"))


def test_failed_operation_raises_its_err() -> None:
    check_operation({"status_code": 200})
    with pytest.raises(ApiError, match="^Image not found$"):
        check_operation({"status_code": 400, "err": "Image not found"})
    with pytest.raises(ApiError):
        check_operation({"status_code": 401, "status": "Cancelled", "err": ""})


def test_multipart_body(tmp_path: Path) -> None:
    (tmp_path / "meta.tar").write_bytes(b"META")
    (tmp_path / "rootfs.squashfs").write_bytes(b"ROOT" * 1000)
    body = multipart_body(
        [("metadata", tmp_path / "meta.tar"), ("rootfs", tmp_path / "rootfs.squashfs")],
        boundary="BND",
    )
    data = b"".join(body.chunks())
    assert len(data) == body.length
    assert body.content_type == "multipart/form-data; boundary=BND"
    assert data.startswith(
        b'--BND\r\nContent-Disposition: form-data; name="metadata"; filename="meta.tar"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\nMETA\r\n--BND\r\n"
        b'Content-Disposition: form-data; name="rootfs"; filename="rootfs.squashfs"\r\n'
    )
    assert data.endswith(b"ROOT\r\n--BND--\r\n")


def test_progress_line() -> None:
    p = Progress("Transferring image", 200, enabled=False)
    p.update(90)
    assert p.line(p.start + 1.0) == "Transferring image: 45% (0.0MB/s)"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A one-connection HTTP server in a thread: answers each request with a canned body."""
    path = str(tmp_path / "unix.socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as rfile:
            while True:
                if not rfile.readline():  # request line
                    return
                headers = {}
                while (line := rfile.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.lower()] = value.strip()
                has_body = "content-length" in headers
                seen.append(read_body(rfile, headers, "POST", 200) if has_body else b"")
                envelope = {"type": "sync", "status_code": 200, "metadata": {"n": len(seen)}}
                if len(seen) == 3:
                    envelope = {"type": "error", "error": "Not found", "error_code": 404}
                payload = json.dumps(envelope).encode()
                code = "404 Not Found" if len(seen) == 3 else "200 OK"
                conn.sendall(
                    f"HTTP/1.1 {code}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, seen
    listener.close()
    thread.join(2)


def test_client_keeps_the_connection_and_parses_envelopes(
    server: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    path, seen = server
    client = Client(path)
    try:
        assert client.get("/1.0") == {"n": 1}
        image = tmp_path / "image.tar"
        image.write_bytes(b"x" * 3_000_000)
        envelope = client.query(
            "POST",
            "/1.0/images",
            body=file_body(image),
            progress=Progress("t", 3_000_000, enabled=False),
        )
        assert envelope["metadata"] == {"n": 2}
        assert seen[1] == b"x" * 3_000_000
        assert seen[0] == b""
        with pytest.raises(ApiError) as e:
            client.delete("/1.0/instances/x")
        assert (e.value.message, e.value.status) == ("Not found", 404)
    finally:
        client.close()


def test_mask_roundtrip() -> None:
    data = bytes(range(256)) * 3 + b"xyz"
    assert mask(mask(data, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04") == data
    assert mask(b"", b"abcd") == b""
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frames_roundtrip(size: int) -> None:
    a, b = socket.socketpair()
    with a, b:
        ws = WebSocket(b)
        payload = b"p" * size
        frame = encode_frame(BINARY, payload, b"\x09\x08\x07\x06")
        sender = threading.Thread(target=a.sendall, args=(frame,))
        sender.start()
        assert ws.recv() == (BINARY, payload)
        sender.join()
        ws.rfile.close()


def test_fragments_ping_and_close() -> None:
    a, b = socket.socketpair()
    with a, b:
        ws = WebSocket(b)
        # unmasked server frames: "he" (TEXT, not final), ping, "llo" (CONT, final), close
        a.sendall(b"\x01\x02he" + b"\x89\x00" + b"\x80\x03llo" + b"\x88\x02\x03\xe8")
        assert ws.recv() == (TEXT, b"hello")
        assert ws.recv() is None
        assert ws.closed
        replies = a.recv(100)
        assert replies[0] == 0x8A  # pong
        assert replies[6] == 0x80 | CLOSE  # then our close
        ws.rfile.close()

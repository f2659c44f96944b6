"""A minimal RFC 6455 websocket client over machined's unix socket, for exec.

Written here rather than imported: the `websockets` package costs ~40 ms of start-up (it imports
importlib.metadata, logging, ssl and email), which alone would break mc exec's 60 ms budget.
Only what the exec protocol needs: binary/text frames, ping/pong, close, fragmentation.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading

from cli.client import Response, connect_unix, error_from, read_body, read_head
from cli.errors import CliError

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    try:  # CPython's built-in SHA-1: hashlib would load OpenSSL (~4 ms of exec start-up)
        from _sha1 import sha1
    except ImportError:
        from hashlib import sha1
    return base64.b64encode(sha1((key + GUID).encode()).digest()).decode()


def mask(data: bytes, key: bytes) -> bytes:
    """XOR data with the 4-byte key, on whole integers rather than byte by byte."""
    n = len(data)
    if not n:
        return data
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """A final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + mask(payload, key)


class WebSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.lock = threading.RLock()
        self.closed = False  # we sent a close frame

    @classmethod
    def connect(cls, path: str, resource: str, sock: socket.socket | None = None
                ) -> WebSocket:
        """Open `resource` on machined's socket at `path`, or over `sock` (a TLS connection
        to an https remote) when given."""
        sock = sock or connect_unix(path)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {resource} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nUser-Agent: mc\r\n\r\n"
        )
        sock.sendall(request.encode("latin-1"))
        ws = cls(sock)
        status, reason, headers = read_head(ws.rfile)
        if status != 101:
            body = read_body(ws.rfile, headers, "GET", status)
            sock.close()
            raise error_from(Response(status, reason, headers, body))
        if headers.get("sec-websocket-accept") != accept_key(key):
            sock.close()
            raise CliError("machined sent a bad websocket handshake")
        return ws

    def send(self, opcode: int, payload: bytes) -> None:
        with self.lock:
            if self.closed:
                return
            self.sock.sendall(encode_frame(opcode, payload, os.urandom(4)))

    def send_binary(self, data: bytes) -> None:
        self.send(BINARY, data)

    def send_text(self, text: str) -> None:
        self.send(TEXT, text.encode())

    def close(self, code: int = 1000) -> None:
        """Send a close frame (once); the socket stays open for the peer's reply."""
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(encode_frame(CLOSE, struct.pack("!H", code), os.urandom(4)))
            except OSError:
                pass
            self.closed = True

    def shutdown(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        key = self._read(4) if b1 & 0x80 else b""
        payload = self._read(n)
        if key:
            payload = mask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv(self) -> tuple[int, bytes] | None:
        """The next data message (opcode, payload), or None once the peer closed."""
        message = bytearray()
        opcode = 0
        try:
            while True:
                fin, op, payload = self._frame()
                if op == PING:
                    self.send(PONG, payload)
                    continue
                if op == PONG:
                    continue
                if op == CLOSE:
                    self.close()
                    return None
                if op != CONT:
                    opcode = op
                message += payload
                if fin:
                    return opcode, bytes(message)
        except (EOFError, OSError, ValueError):
            return None

"""The client side of an exec operation's websockets (see docs/ARCHITECTURE.md, Exec protocol).

Interactive: one pty socket "0" both ways, the terminal in raw mode, SIGWINCH -> window-resize.
Non-interactive: stdin -> "0" (closed at EOF), "1" -> stdout, "2" -> stderr, SIGINT/SIGTERM/SIGHUP
-> signal control messages. Either way the exit status is the operation's metadata.return.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from cli.client import Client
from cli.errors import CliError
from cli.params import url_part
from cli.ws import TEXT, WebSocket

# Annotations only: importing typing costs ~5 ms of mc exec's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    Handler = Callable[[int, FrameType | None], Any] | int | None

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.columns or 80, size.lines or 24
    except (OSError, ValueError):
        return 80, 24


def resize_message(width: int, height: int) -> str:
    return json.dumps(
        {"command": "window-resize", "args": {"width": str(width), "height": str(height)}}
    )


def signal_message(signum: int) -> str:
    return json.dumps({"command": "signal", "signal": signum})


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Session:
    def __init__(self, client: Client, op: dict[str, Any]) -> None:
        self.client = client
        self.op_id = str(op.get("id", ""))
        meta = op.get("metadata") or {}
        self.fds: dict[str, str] = dict(meta.get("fds") or op.get("fds") or {})
        if not self.op_id or "control" not in self.fds or "0" not in self.fds:
            raise CliError("machined's exec operation lacks its websocket secrets")
        self.sockets: list[WebSocket] = []
        self.saved: dict[int, Handler] = {}

    def connect(self, fd: str) -> WebSocket:
        resource = f"/1.0/operations/{self.op_id}/websocket?secret={url_part(self.fds[fd])}"
        sock = None
        if getattr(self.client, "url", None):  # an https remote: same TLS as its API
            from cli import tls

            sock = tls.connect(self.client.url, self.client.ssl_context)
        ws = WebSocket.connect(self.client.path, resource, sock)
        self.sockets.append(ws)
        return ws

    def on_signal(self, signum: int, handler: Callable[[int, FrameType | None], Any]) -> None:
        self.saved[signum] = signal.signal(signum, handler)

    def run(self, interactive: bool, disable_stdin: bool) -> int:
        try:
            control = self.connect("control")
            if interactive:
                self._interactive(control, disable_stdin)
            else:
                self._noninteractive(control, disable_stdin)
        finally:
            for signum, handler in self.saved.items():
                signal.signal(signum, handler)
            for ws in self.sockets:
                ws.close()
                ws.shutdown()
        op = self.client.wait_operation(f"/1.0/operations/{self.op_id}")
        return int((op.get("metadata") or {}).get("return", 0) or 0)

    # -- non-interactive ---------------------------------------------------------------------
    def _noninteractive(self, control: WebSocket, disable_stdin: bool) -> None:
        stdin, stdout, stderr = self.connect("0"), self.connect("1"), self.connect("2")
        for signum in FORWARDED:
            self.on_signal(signum, lambda n, _f: control.send_text(signal_message(n)))
        if disable_stdin:
            stdin.close()
        else:
            threading.Thread(target=pump_stdin, args=(stdin, True), daemon=True).start()
        readers = [
            threading.Thread(target=pump_output, args=(ws, fd), daemon=True)
            for ws, fd in ((stdout, 1), (stderr, 2))
        ]
        for t in readers:
            t.start()
        for t in readers:
            while t.is_alive():
                t.join(0.5)  # a timeout keeps the main thread able to run signal handlers

    # -- interactive -------------------------------------------------------------------------
    def _interactive(self, control: WebSocket, disable_stdin: bool) -> None:
        import termios
        import tty

        pty = self.connect("0")
        control.send_text(resize_message(*terminal_size()))
        self.on_signal(
            signal.SIGWINCH, lambda _n, _f: control.send_text(resize_message(*terminal_size()))
        )
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self.on_signal(signum, _exit_on_signal)
        saved = None
        if os.isatty(0):
            saved = termios.tcgetattr(0)
            tty.setraw(0, termios.TCSANOW)  # TCSAFLUSH would drop keys typed ahead
        try:
            if not disable_stdin:
                threading.Thread(target=pump_stdin, args=(pty, False), daemon=True).start()
            pump_output(pty, 1)
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def pump_stdin(ws: WebSocket, close_at_eof: bool) -> None:
    try:
        while data := os.read(0, 65536):
            ws.send_binary(data)
    except OSError:
        pass
    if close_at_eof:
        ws.close()


def pump_output(ws: WebSocket, fd: int) -> None:
    """Copy a data socket to fd until the server closes it (or sends an empty text barrier)."""
    broken = False
    while (message := ws.recv()) is not None:
        opcode, payload = message
        if opcode == TEXT and not payload:
            break
        if broken:
            continue
        try:
            write_all(fd, payload)
        except OSError:
            broken = True  # keep draining so the command isn't blocked on a full socket

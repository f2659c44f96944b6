"""POST /1.0/instances/<n>/exec: a websocket operation, as LXD. The command starts once every
websocket is connected; the operation's metadata.return is its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from aiohttp import WSMsgType, web

from machined.api.context import INSTANCES, STATE
from machined.api.fdio import read_chunk, set_nonblocking, write_all
from machined.api.operations import Operation, new_secret
from machined.api.responses import async_response, json_body
from machined.errors import BadRequest
from machined.instances import model
from machined.instances.service import ExecTarget, InstanceService

TYPE_CHECKING = False
if TYPE_CHECKING:
    from machined.runtime import ExecProcess

routes = web.RouteTableDef()
log = logging.getLogger("machined.exec")
CONNECT_TIMEOUT = 30.0


def _int_field(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """Range-checked here: out-of-range numbers would otherwise fail deep in the exec server."""
    value = body.get(key, default)
    try:
        number = int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high or isinstance(value, bool):
        raise BadRequest(f"Exec field {key!r} must be a number from {low} to {high}, "
                         f"not {value!r}")
    return number


MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


class ExecSession:
    def __init__(self, svc: InstanceService, container: ExecTarget, argv: list[str],
                 env: dict[str, str], uid: int, gid: int, cwd: str, interactive: bool,
                 width: int, height: int, with_websockets: bool) -> None:
        self.svc = svc
        self.container = container
        self.argv, self.env, self.uid, self.gid, self.cwd = argv, env, uid, gid, cwd
        self.interactive, self.width, self.height = interactive, width, height
        names = ["0", "control"] if interactive else ["0", "1", "2", "control"]
        self.secrets = {name: new_secret() for name in names} if with_websockets else {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.all_connected = asyncio.Event()
        if not with_websockets:
            self.all_connected.set()
        self.proc: ExecProcess | None = None
        self.started = asyncio.Event()
        self.finished = asyncio.Event()

    async def connect(self, secret: str, request: web.Request) -> web.StreamResponse:
        fd_name = next((n for n, s in self.secrets.items() if s == secret), None)
        if fd_name is None or fd_name in self.sockets:
            raise BadRequest("Invalid or already used websocket secret")
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.sockets[fd_name] = ws
        if len(self.sockets) == len(self.secrets):
            self.all_connected.set()
        try:
            if fd_name == "control":
                await self._control_loop(ws)
            elif fd_name == "0":
                await self._stdin_loop(ws)
            await self.finished.wait()
        finally:
            await ws.close()
        return ws

    async def _control_loop(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            await self.started.wait()
            try:
                command = json.loads(msg.data)
            except ValueError:
                continue
            proc = self.proc
            if proc is None:
                continue
            if command.get("command") == "window-resize":
                args = command.get("args") or {}
                with contextlib.suppress(ValueError, TypeError, OSError, BadRequest):
                    proc.resize(_int_field(args, "width", 80, 1, 65535),
                                _int_field(args, "height", 24, 1, 65535))
            elif command.get("command") == "signal":
                with contextlib.suppress(ValueError, TypeError, OSError, BadRequest):
                    proc.signal(_int_field(command, "signal", 15, 1, 64))

    async def _stdin_loop(self, ws: web.WebSocketResponse) -> None:
        await self.started.wait()
        proc = self.proc
        fd = None if proc is None else (proc.master if self.interactive else proc.stdin)
        async for msg in ws:
            if fd is None:
                continue
            data = msg.data if msg.type == WSMsgType.BINARY else (
                msg.data.encode() if msg.type == WSMsgType.TEXT else b"")
            if data:
                with contextlib.suppress(OSError):
                    await write_all(fd, data)
        if not self.interactive and proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                os.close(proc.stdin)
            proc.stdin = None

    async def run(self, op: Operation) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.all_connected.wait(), CONNECT_TIMEOUT)
        except TimeoutError:
            self.finished.set()
            raise BadRequest("Timed out waiting for the exec websockets to connect") from None
        try:
            self.proc = await self.svc.spawn_exec(
                self.container, self.argv, self.env, self.uid, self.gid, self.cwd,
                self.interactive, self.width, self.height)
        except BaseException:
            self.started.set()
            self.finished.set()
            raise
        self.started.set()
        proc = self.proc
        pumps = []
        if self.interactive and proc.master is not None:
            set_nonblocking(proc.master)
            pumps.append(asyncio.create_task(self._pump(proc.master, "0")))
        else:
            for fd, name in ((proc.stdout, "1"), (proc.stderr, "2")):
                if fd is not None:
                    set_nonblocking(fd)
                    pumps.append(asyncio.create_task(self._pump(fd, name)))
            if proc.stdin is not None:
                set_nonblocking(proc.stdin)
                if not self.secrets:
                    os.close(proc.stdin)
                    proc.stdin = None
        try:
            code = await proc.wait()
            if pumps:
                # Output written just before exit is still in the pipes: drain it, but do not
                # hang on a background process that kept the pipe open.
                await asyncio.wait(pumps, timeout=2.0)
        finally:
            for task in pumps:
                task.cancel()
            proc.close()
            # The client waits for the streams to close before asking for the exit code; in
            # interactive mode "0" is the only stream, so the server must close it.
            for ws in self.sockets.values():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close()
            self.finished.set()
        return {"return": code}

    async def _pump(self, fd: int, name: str) -> None:
        ws = self.sockets.get(name)
        while True:
            chunk = await read_chunk(fd)
            if not chunk:
                break
            if ws is not None and not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await ws.send_bytes(chunk)
        if ws is not None and not ws.closed and name != "0":
            await ws.close()


@routes.post("/1.0/instances/{name}/exec")
async def exec_instance(request: web.Request) -> web.Response:
    svc = request.app[INSTANCES]
    name = request.match_info["name"]
    body = await json_body(request)
    command = body.get("command")
    if not isinstance(command, list) or not command or not all(
            isinstance(a, str) for a in command):
        raise BadRequest("Exec needs a command: a non-empty list of strings")
    uid, gid = _int_field(body, "user", 0, 0, MAX_ID), _int_field(body, "group", 0, 0, MAX_ID)
    width = _int_field(body, "width", 80, 1, 65535)
    height = _int_field(body, "height", 24, 1, 65535)
    inst, container = svc.exec_target(name)
    requested = body.get("environment") or {}
    if not isinstance(requested, dict):
        raise BadRequest("Exec environment must be an object of strings")
    env = model.exec_environment({str(k): str(v) for k, v in requested.items()},
                                 inst.expanded_config, uid)
    cwd = body.get("cwd") or env.get("HOME", "/")
    session = ExecSession(svc, container, command, env, uid, gid, cwd,
                          bool(body.get("interactive")), width, height,
                          bool(body.get("wait-for-websocket")))
    # Debug level: an exec is routine (tools run one per second) and its argv may hold secrets.
    log.debug("Exec in instance %s: %s", name, command)
    op = request.app[STATE].operations.start(
        "websocket", "Executing command", {"instances": [f"/1.0/instances/{name}"]},
        session.run)
    op.websocket_handler = session.connect
    op.set_metadata(fds=dict(session.secrets), command=command, environment=env,
                    interactive=session.interactive)
    return async_response(op.to_json())



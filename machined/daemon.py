"""Composition root: open the database, mount and reconcile the storage pools, build the
API, find the containers that kept running, serve until told to stop. Stopping the daemon
never stops containers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import yaml
from aiohttp import web

from machined.api.https import HTTPS
from machined.api.operations import Operation, Operations
from machined.api.routes_internal import SHUTDOWN
from machined.api.server import bind_unix_socket, build_app
from machined.db import open_database
from machined.db import operations as db_operations
from machined.db import profiles as db_profiles
from machined.errors import MachinedError
from machined.images import store
from machined.images.service import ImageService
from machined.images.tasks import ImageTasks
from machined.instances.autostart import Autostart, host_shutdown
from machined.instances.service import InstanceService
from machined.instances.snapshot_tasks import SnapshotTasks
from machined.instances.snapshots import SnapshotService
from machined.network.hooks import NetworkHooks
from machined.network.proxy import ProxyService
from machined.network.service import NetworkService
from machined.paths import Paths
from machined.sdnotify import Notifier
from machined.state import State
from machined.storage.pools import Storage

log = logging.getLogger("machined")
PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


def setup_logging(paths: Paths, debug: bool) -> None:
    paths.daemon_log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(paths.daemon_log)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def seed_profiles(state: State) -> bool:
    """The default profile exists from the first start on (profiles/default.yaml); True
    when it was made now (the first start of this state directory)."""
    if "default" in db_profiles.names(state.db):
        return False
    data = yaml.safe_load((PROFILES_DIR / "default.yaml").read_text()) or {}
    db_profiles.create(state.db, db_profiles.ProfileRecord(
        name="default", description=data.get("description", ""),
        config={k: str(v) for k, v in (data.get("config") or {}).items()},
        devices=data.get("devices") or {}))
    return True


PRUNE_EVERY = 1000


def _recorder(state_holder: list[State]) -> object:
    recorded = 0

    def record(op: Operation) -> None:
        nonlocal recorded
        db = state_holder[0].db
        db_operations.record(db, op.to_json())
        recorded += 1
        if recorded % PRUNE_EVERY == 0:
            db_operations.prune(db)
    return record


def _lock_state_dir(paths: Paths) -> int:
    """One daemon per state directory, for its whole life (the kernel drops the lock when
    the process dies, however it dies). The socket alone cannot tell: a stopping daemon
    closes it while its copies still run, and a second daemon's start-up cleanup would
    remove them. The fd is close-on-exec: helpers and containers never hold the lock."""
    import fcntl

    fd = os.open(paths.root / "machined.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MachinedError(f"machined is already running on {paths.socket}") from None
    return fd


async def serve(paths: Paths) -> None:
    notifier = Notifier.from_env()  # before any helper inherits the environment
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o711)
    # Traversable, not listable (LXD does the same): dnsmasq reads its hosts file in
    # networks/<n>/ as nobody. The private directories below it (database, logs, images)
    # are 0700.
    os.chmod(paths.root, 0o711)
    _lock_state_dir(paths)
    db = open_database(paths.database)
    holder: list[State] = []
    state = State(db=db, paths=paths, operations=Operations(_recorder(holder)))  # type: ignore[arg-type]
    holder.append(state)
    db_operations.prune(db)
    first_start = seed_profiles(state)
    storage = Storage(state)
    state.storage = storage
    storage.load()  # a pool that cannot be mounted stays unavailable (logged), not fatal
    # Volumes no row names are what an interrupted create/snapshot/copy/delete left.
    removed = storage.reconcile()
    if removed:
        log.info("Removed %d unreferenced volume(s): %s", len(removed), ", ".join(removed))
    store.remove_unregistered_files(state)  # image files of an interrupted register/delete
    instances = InstanceService(state, storage)
    images = ImageService(state, storage, instances)
    instances.remote_images = images  # launches from remote servers
    snapshots = SnapshotService(instances)
    alive = instances.recover()
    log.info("Found %d running container(s): %s", len(alive), ", ".join(alive) or "none")
    # Bridges and dnsmasq are reconciled (never torn down under running containers), then
    # the running instances' proxies come back.
    networks = NetworkService(state)
    await networks.startup(first_start)
    network_hooks = NetworkHooks(state, networks, ProxyService(state))
    instances.network_hooks = network_hooks
    await network_hooks.recover(alive)
    images.refill_spares()  # images that instances are made from keep a spare ready

    app = build_app(state, storage, instances, images, snapshots, networks)
    # SIGTERM/SIGINT stop the daemon only; SIGPWR and PUT /internal/shutdown (`machined
    # shutdown`) first stop the instances as for a host power-off.
    stop, for_host = asyncio.Event(), asyncio.Event()

    def begin_host_shutdown() -> None:
        for_host.set()
        stop.set()
    app[SHUTDOWN] = begin_host_shutdown  # before the runner freezes the app
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    if paths.socket.exists() or paths.socket.is_symlink():
        paths.socket.unlink()
    https = app[HTTPS]  # before the socket: once it answers, HTTPS listens too
    state.config_listeners.append(https.on_config)
    await https.start(runner)
    sock = bind_unix_socket(paths.socket)
    site = web.SockSite(runner, sock)
    await site.start()
    log.info("machined ready on %s", paths.socket)
    notifier.notify("READY=1")
    # Instances with boot.autostart (or last-state RUNNING), while the API answers.
    autostart = Autostart(instances)
    autostart.start()
    # Cache expiry and auto-update: both passes now, then on schedule (images/tasks.py).
    image_tasks = ImageTasks(images)
    state.config_listeners.append(image_tasks.config_changed)
    image_tasks.start()
    # Scheduled snapshots (@startup ones now) and snapshot expiry (instances/snapshot_tasks.py).
    snapshot_tasks = SnapshotTasks(snapshots)
    snapshot_tasks.start()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGPWR, begin_host_shutdown)
    await stop.wait()
    notifier.notify("STOPPING=1")
    await autostart.stop()
    if for_host.is_set():
        log.info("machined shutting down for host power-off: stopping instances")
        await site.stop()  # no new requests while the instances stop
        await https.stop()
        await snapshot_tasks.stop()
        await image_tasks.stop()
        await host_shutdown(instances)
    else:
        log.info("machined stopping (containers keep running)")
    await snapshot_tasks.stop()
    await image_tasks.stop()
    await instances.cancel_background()
    await network_hooks.close()
    await snapshots.cancel_background()
    # Operations still running are cancelled while the database is open, so their undo
    # steps can write and each is recorded (as Cancelled); clients waiting on one get
    # their answer before the listeners close. Again after: requests served meanwhile.
    await state.operations.cancel_running()
    await https.stop()
    await runner.cleanup()
    await state.operations.cancel_running()
    paths.socket.unlink(missing_ok=True)
    db.close()


def raise_fd_limit(wanted: int = 65536) -> None:
    """Each proxied connection holds two fds and each running container's exec server one:
    the default soft limit of 1024 is too few. Helpers put it back for containers."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    import argparse

    from machined.paths import state_dir_from_env

    parser = argparse.ArgumentParser(prog="machined", description="System-container daemon")
    parser.add_argument("--debug", action="store_true", help="verbose logging")
    parser.add_argument("--state-dir", help="state directory (default $MACHINED_DIR or "
                        "/var/lib/machined)")
    commands = parser.add_subparsers(dest="command", metavar="[command]")
    commands.add_parser("serve", help="run the daemon (the default)")
    down = commands.add_parser(
        "shutdown", help="stop the instances (boot.stop.priority batches) as for a host "
        "power-off, record their state for autostart, and stop the daemon")
    down.add_argument("--timeout", type=float, help="seconds to wait for the daemon to exit")
    down.add_argument("--if-host-stopping", action="store_true",
                      help="only when the host is shutting down (systemd ExecStop); "
                      "otherwise do nothing: a service restart leaves instances running")
    query = commands.add_parser("sql", help="run an SQL statement in the daemon's database")
    query.add_argument("query", help='e.g. "SELECT name FROM instances"')
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    args = parser.parse_args(argv)
    paths = Paths(Path(args.state_dir) if args.state_dir else state_dir_from_env())
    if args.command in ("shutdown", "sql"):
        from machined import admin

        if args.command == "shutdown":
            return admin.shutdown(paths, args.timeout, args.if_host_stopping)
        return admin.sql(paths, args.query, args.format)
    if os.geteuid() != 0:
        print("Error: machined must run as root (it creates namespaces, mounts and cgroups)",
              file=sys.stderr)
        return 1
    # Pools are mounted in the daemon's own mount namespace (never on the host's): entered
    # before any thread exists (logging, asyncio's executor), as unshare(CLONE_NEWNS) needs.
    from machined.runtime import mounts

    mounts.enter_private_mount_namespace()
    raise_fd_limit()
    setup_logging(paths, args.debug)
    try:
        asyncio.run(serve(paths))
    except MachinedError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return 1
    return 0

"""The aiohttp application and its unix socket listener."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from aiohttp import web

from machined.api import (
    routes_certificates,
    routes_exec,
    routes_files,
    routes_image_export,
    routes_images,
    routes_instances,
    routes_internal,
    routes_networks,
    routes_profiles,
    routes_server,
    routes_snapshots,
    routes_storage,
    routes_warnings,
)
from machined.api.access import trust_middleware
from machined.api.context import IMAGES, INSTANCES, NETWORKS, SNAPSHOTS, STATE, STORAGE
from machined.api.https import HTTPS, HttpsEndpoint
from machined.api.responses import error_middleware
from machined.images.service import ImageService
from machined.instances.service import InstanceService
from machined.instances.snapshots import SnapshotService
from machined.network.service import NetworkService
from machined.state import State
from machined.storage.pools import Storage


def build_app(state: State, storage: Storage, instances: InstanceService,
              images: ImageService | None = None,
              snapshots: SnapshotService | None = None,
              networks: NetworkService | None = None) -> web.Application:
    # trust_middleware runs inside error_middleware: its refusals are LXD error envelopes.
    app = web.Application(middlewares=[error_middleware, trust_middleware],
                          client_max_size=1 << 40)
    app[STATE] = state
    app[HTTPS] = HttpsEndpoint(state)
    app[STORAGE] = storage
    app[INSTANCES] = instances
    app[IMAGES] = images if images is not None else ImageService(state, storage, instances)
    app[SNAPSHOTS] = snapshots if snapshots is not None else SnapshotService(instances)
    app[NETWORKS] = networks if networks is not None else NetworkService(state)
    for table in (routes_server.routes, routes_instances.routes, routes_exec.routes,
                  routes_images.alias_routes, routes_image_export.routes, routes_images.routes,
                  routes_profiles.routes, routes_certificates.routes):
        app.add_routes(table)
    app.add_routes(routes_files.routes)
    app.add_routes(routes_snapshots.routes)
    app.add_routes(routes_storage.routes)
    app.add_routes(routes_networks.routes)
    app.add_routes(routes_warnings.routes)
    app.add_routes(routes_internal.routes)
    return app


def bind_unix_socket(path: Path, mode: int = 0o660) -> socket.socket:
    """Bind in a private directory, set the mode, then rename into place: the socket is never
    reachable with a wider mode, not even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=".socket-", dir=path.parent))
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        staged = private / "s"
        sock.bind(os.fspath(staged))
        os.chmod(staged, mode)
        os.rename(staged, path)
    finally:
        os.rmdir(private)
    sock.listen(128)
    sock.setblocking(False)
    return sock

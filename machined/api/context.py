"""Typed application keys: how routes reach the services."""

from __future__ import annotations

from aiohttp import web

from machined.images.service import ImageService
from machined.instances.service import InstanceService
from machined.instances.snapshots import SnapshotService
from machined.network.service import NetworkService
from machined.state import State
from machined.storage.pools import Storage

STATE = web.AppKey("state", State)
INSTANCES = web.AppKey("instances", InstanceService)
STORAGE = web.AppKey("storage", Storage)
IMAGES = web.AppKey("images", ImageService)
SNAPSHOTS = web.AppKey("snapshots", SnapshotService)
NETWORKS = web.AppKey("networks", NetworkService)

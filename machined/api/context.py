"""Typed application keys: how routes reach the services."""

from __future__ import annotations

from aiohttp import web

from machined.images.service import ImageService
from machined.instances.service import InstanceService
from machined.state import State
from machined.storage.dir import DirPool

STATE = web.AppKey("state", State)
INSTANCES = web.AppKey("instances", InstanceService)
POOL = web.AppKey("pool", DirPool)
IMAGES = web.AppKey("images", ImageService)

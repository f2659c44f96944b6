"""/1.0/warnings (issue 7): filled in by the autostart work."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()

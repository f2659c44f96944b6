"""/1.0/networks (issue 6): filled in by the network work."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()

"""Proxy devices (skeleton; the issue-6 proxy work fills it in)."""

from __future__ import annotations

from machined.state import State


class ProxyService:
    def __init__(self, state: State) -> None:
        self.state = state

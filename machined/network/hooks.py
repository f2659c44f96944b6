"""What networking does around an instance's lifecycle (skeleton; issue-6 nic work)."""

from __future__ import annotations

from typing import Any

from machined.network.proxy import ProxyService
from machined.network.service import NetworkService
from machined.state import State


class NetworkHooks:
    def __init__(self, state: State, networks: NetworkService, proxies: ProxyService) -> None:
        self.state = state
        self.networks = networks
        self.proxies = proxies

    async def recover(self, alive: list[str]) -> None:
        """At daemon start, after networks.startup(): proxies for running instances, stale
        host links of stopped ones removed."""

    async def close(self) -> None:
        """At daemon stop: proxy listeners closed (containers keep running)."""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"NetworkHooks({self.networks!r})"


_ = Any

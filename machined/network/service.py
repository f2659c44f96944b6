"""NetworkService: managed networks (skeleton; the issue-6 network work fills it in)."""

from __future__ import annotations

from machined.state import State


class NetworkService:
    def __init__(self, state: State) -> None:
        self.state = state

    async def startup(self, first_start: bool) -> None:
        """At daemon start: seed the default network on the first start, then reconcile
        every managed network (bridge, addresses, dnsmasq, NAT)."""

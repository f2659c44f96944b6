"""What networking does around an instance's lifecycle: InstanceService calls these hooks.

check_devices  at create/update/profile change: networks exist, static addresses usable
before_start   nics planned, volatile keys stored, DHCP hosts refreshed (before the first
               DHCP request), host interfaces made; returns LaunchSpec.nics
start_failed   the host interfaces made for the failed start deleted
after_start    proxy devices listening
after_stop     proxies closed, host interfaces left deleted
deleted/renamed  DHCP hosts files follow the instance
recover/close  daemon start/stop
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from machined import runtime
from machined.config import devices as devmod
from machined.db import instances as db_instances
from machined.db import networks as db_networks
from machined.db import profiles as db_profiles
from machined.errors import BadRequest, Conflict, MachinedError
from machined.instances import model
from machined.network import nics
from machined.network.proxy import ProxyService
from machined.network.service import NetworkService
from machined.state import State

if TYPE_CHECKING:
    from machined.instances.service import Instance

log = logging.getLogger("machined.network")
Devices = Mapping[str, Mapping[str, str]]


class NetworkHooks:
    def __init__(self, state: State, networks: NetworkService, proxies: ProxyService) -> None:
        self.state = state
        self.networks = networks
        self.proxies = proxies

    @property
    def tag(self) -> str:
        return self.state.paths.link_tag

    # ------------------------------------------------------------ validation

    def check_devices(self, instance: str | None, devices: Devices) -> None:
        """The nics of an instance's expanded devices: managed networks exist, a static
        ipv4.address is on one and usable by this instance. `instance` None (a copy or
        restore target): the address is checked at start instead."""
        managed = set(db_networks.names(self.state.db))
        for device, dev in nics.nic_devices(devices):
            network = nics.managed_network(dev, managed)
            if network is not None and network not in managed:
                raise BadRequest(f"Device {device!r}: network {network!r} not found")
            if network is not None and network in self.networks.deleting:
                raise Conflict(f"Device {device!r}: network {network!r} is being deleted")
            address = dev.get("ipv4.address")
            if not address:
                continue
            if network is None:
                raise BadRequest(f"Device {device!r}: ipv4.address needs a managed network "
                                 "(network=<name>): addresses are reserved in machined's own "
                                 "DHCP servers")
            if instance is not None:
                self.networks.check_static_address(network, instance, device, address)

    # ------------------------------------------------------------ lifecycle

    async def before_start(self, inst: Instance) -> list[dict[str, str]]:
        """Make the instance's nics on the host; their LaunchSpec.nics entries. Stores
        volatile.<dev>.hwaddr/name/host_name first and refreshes the DHCP hosts of each
        managed network, so the container's first DHCP request already finds its name and
        reservation. Raises (with nothing left on the host) when a nic cannot be made."""
        name = inst.record.name
        found = nics.nic_devices(inst.expanded_devices)
        if not found:
            return []
        for device, dev in found:
            devmod.check_nic_start(device, dev)
        self.check_devices(name, inst.expanded_devices)
        managed = set(db_networks.names(self.state.db))
        parents: dict[str, tuple[str, str | None]] = {}
        for device, dev in found:
            network = nics.managed_network(dev, managed)
            parent = self.networks.bridge_for(network).ifname if network else dev["parent"]
            parents[device] = (parent, network)
        volatile = {k: v for k, v in inst.record.config.items() if k.startswith("volatile.")}
        plans = nics.plan_nics(found, volatile, parents, self._macs_of_others(name))
        updates = nics.volatile_updates(plans, inst.expanded_devices, volatile)
        if updates:
            db_instances.set_config_keys(self.state.db, name, updates)
        for network in sorted({p.network for p in plans if p.network}):
            await self.networks.refresh_hosts(network)
        await asyncio.to_thread(nics.create_links, plans, self.tag, name)
        return [plan.spec(self.tag, name) for plan in plans]

    async def start_failed(self, inst: Instance) -> None:
        """After a failed start: the host interfaces made for it go, proxies too."""
        name = inst.record.name
        await self.proxies.stop(name)
        if nics.nic_devices(inst.expanded_devices):
            await self._delete_links(name)

    async def after_start(self, inst: Instance, container: runtime.RunningContainer) -> None:
        """The instance runs: its proxy devices listen (raises, nothing listening, when one
        cannot)."""
        await self.proxies.start(inst.record.name, container, inst.expanded_devices)

    async def devices_changed(self, name: str, devices: Devices) -> None:
        """A running instance's expanded devices changed (its own or a profile's): proxy
        devices follow at once, as LXD hot-plugs them (unchanged ones keep their connections;
        raises, the listeners as before, when one cannot listen). Nics apply at the next
        start. No-op when the instance is stopped."""
        container = runtime.find(str(self.state.paths.run(name)))
        if container is not None:
            await self.proxies.start(name, container, devices)

    async def after_stop(self, name: str) -> None:
        """The instance stopped (through the daemon): proxies closed; a veth whose peer's
        namespace is not gone yet is deleted now rather than when the kernel gets to it."""
        await self.proxies.stop(name)
        if nics.nic_devices(self._expanded(name)):
            await self._delete_links(name)

    async def deleted(self, rec: db_instances.InstanceRecord) -> None:
        """The instance's row is gone: its names and reservations leave the DHCP hosts."""
        await self.proxies.stop(rec.name)
        devices = self._expand(rec)
        networks = self._networks_of(devices)
        await self._refresh(networks)
        # Its leases too (LXD releases them): else <name>.mc answers for up to the lease time.
        for network in sorted(networks):
            macs = {(dev.get("hwaddr") or rec.config.get(f"volatile.{dev_name}.hwaddr", ""))
                    .lower() for dev_name, dev in nics.nic_devices(devices)
                    if nics.managed_network(dev, networks) == network}
            try:
                await self.networks.release_leases(network, macs - {""})
            except MachinedError as e:
                log.warning("Leases of %s on network %s not released: %s", rec.name, network,
                            e.message)

    async def renamed(self, old: str, new: str) -> None:
        """DHCP hosts name the instance: they follow its new name."""
        await self._refresh(self._networks_of(self._expanded(new)))

    async def recover(self, alive: list[str]) -> None:
        """At daemon start, after networks.startup(): host interfaces of instances that are
        not running (a daemon killed mid-start, a container that died while we were away)
        are deleted; running instances get their proxies back. Failures are logged: the
        daemon starts anyway."""
        running = set(alive)
        try:
            removed = await asyncio.to_thread(nics.delete_links, self.tag,
                                              lambda owner: owner not in running)
        except Exception as e:  # noqa: BLE001 - logged, never fatal at start
            log.warning("Could not remove stale nic interfaces: %s", e)
        else:
            if removed:
                log.info("Removed stale nic interfaces: %s", ", ".join(removed))
        for name in alive:
            container = runtime.find(str(self.state.paths.run(name)))
            if container is None:
                continue
            try:
                await self.proxies.start(name, container, self._expanded(name))
            except (MachinedError, OSError) as e:
                log.warning("Proxy devices of %s not restored: %s",
                            name, getattr(e, "message", e))

    async def close(self) -> None:
        """At daemon stop: proxy listeners closed (containers keep running, and so do their
        nics)."""
        await self.proxies.close()

    # ------------------------------------------------------------ helpers

    async def _delete_links(self, name: str) -> None:
        """Logged, not raised: a stop or a failed start must report its own outcome; what
        stays is removed at the next start of the instance or of the daemon."""
        try:
            removed = await asyncio.to_thread(nics.delete_links, self.tag,
                                              lambda owner: owner == name)
        except Exception as e:  # noqa: BLE001
            log.warning("Could not delete the host interfaces of %s: %s", name, e)
            return
        if removed:
            log.info("Deleted host interfaces of %s: %s", name, ", ".join(removed))

    async def _refresh(self, networks: set[str]) -> None:
        for network in sorted(networks):
            try:
                await self.networks.refresh_hosts(network)
            except MachinedError as e:
                log.warning("DHCP hosts of network %s not refreshed: %s", network, e.message)

    def _networks_of(self, devices: Devices) -> set[str]:
        managed = set(db_networks.names(self.state.db))
        found = (nics.managed_network(dev, managed) for _, dev in nics.nic_devices(devices))
        return {network for network in found if network in managed}

    def _expanded(self, name: str) -> Devices:
        try:
            return self._expand(db_instances.get(self.state.db, name))
        except MachinedError:
            return {}

    def _expand(self, rec: db_instances.InstanceRecord) -> Devices:
        layers = [({}, db_profiles.get(self.state.db, p).devices) for p in rec.profiles
                  if db_profiles.exists(self.state.db, p)]
        return model.expand(layers, {}, rec.devices)[1]

    def _macs_of_others(self, name: str) -> set[str]:
        """MACs other instances have or will get (volatile or hwaddr keys): a new MAC avoids
        them (24 random bits collide sooner than one thinks on a busy host)."""
        macs = set()
        for rec in db_instances.list_all(self.state.db):
            if rec.name == name:
                continue
            macs |= {v for k, v in rec.config.items()
                     if k.startswith("volatile.") and k.endswith(".hwaddr")}
            macs |= {d["hwaddr"] for d in rec.devices.values() if d.get("hwaddr")}
        return macs

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"NetworkHooks({self.networks!r})"

"""NetworkService: managed networks (bridge + dnsmasq + optional NAT) and the host's other
interfaces, as LXD's /1.0/networks shows them.

A create is all or nothing: everything is validated first (keys, names, the interface name,
subnet overlaps with the host and other networks), then bridge -> addresses -> dnsmasq -> NAT
-> database row, each step undone if a later one fails. An update is validated, stored and
applied (the old config comes back if applying fails). At daemon start every network is
reconciled: what exists and matches is kept (the bridge with its ports, a dnsmasq already
running with the same argv), what is missing is made again, nothing is duplicated.

Netlink work runs on worker threads (bridge.py: pyroute2 cannot run on the loop's thread);
the synchronous readers (`list`, `get` of a host interface, `state`) wait for theirs, a few
milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import shutil
import socket
import time
from typing import Any

from machined import clock, crash
from machined.db import instances as db_instances
from machined.db import networks as db_networks
from machined.db import profiles as db_profiles
from machined.errors import BadRequest, Conflict, MachinedError, NotFound
from machined.instances import model as instance_model
from machined.network import bridge, dnsmasq, model, nat
from machined.network.model import BridgeInfo, HostEntry, NetFiles, Plan
from machined.state import State

log = logging.getLogger("machined.network")
INIT_ENV = "MACHINED_INIT_NETWORK"


class NetworkService:
    def __init__(self, state: State, rng: random.Random | None = None) -> None:
        # `state` is the /state reader below; the daemon State is kept as _st.
        self._st = state
        self.rng = rng or random.SystemRandom()
        # Creates, updates, renames and deletes one at a time: subnet choice and overlap
        # checks look at the other networks.
        self._lock = asyncio.Lock()
        self._errors: dict[str, str] = {}  # network -> why it is not working
        self.deleting: set[str] = set()  # networks whose delete is under way
        self._dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

    @property
    def tag(self) -> str:
        return self._st.paths.link_tag

    def files(self, name: str) -> NetFiles:
        return NetFiles(self._st.paths.network(name))

    # ------------------------------------------------------------ start-up

    async def startup(self, first_start: bool) -> None:
        """At daemon start: reconcile every managed network (bridge, addresses, dnsmasq,
        NAT), remove what an interrupted create/delete left, then seed the default network
        on the first start of the state directory."""
        await self.reconcile()
        if first_start:
            await self._seed_default()

    async def reconcile(self) -> None:
        started = time.monotonic()
        names = db_networks.names(self._st.db)
        for name in names:
            try:
                await self._apply(name, model.plan(db_networks.get(self._st.db, name).config))
                self._errors.pop(name, None)
            except Exception as e:  # one broken network must not stop the daemon
                self._errors[name] = _message(e)
                log.error("Network %s could not be set up: %s", name, _message(e))
        await self._sweep(set(names))
        if names:
            log.info("Reconciled %d network(s) in %.0f ms", len(names),
                     (time.monotonic() - started) * 1000)

    async def _sweep(self, keep: set[str]) -> None:
        """Directories and tagged bridges of networks no row names any more (a create or
        delete interrupted by a crash): their dnsmasq stopped, NAT removed, removed."""
        base = self._st.paths.network("x").parent
        if base.is_dir():
            for entry in sorted(base.iterdir()):
                if entry.name in keep or not entry.is_dir():
                    continue
                files = NetFiles(entry)
                try:
                    await dnsmasq.stop(files)
                    if files.nat.exists():
                        await nat.remove(entry.name, files)
                    shutil.rmtree(entry)
                    log.info("Removed the leftovers of network %s", entry.name)
                except Exception as e:
                    log.warning("Could not remove the leftovers of network %s: %s", entry.name,
                                _message(e))
        removed = await asyncio.to_thread(bridge.sweep, self.tag, keep)
        if removed:
            log.info("Removed leftover bridge(s): %s", ", ".join(removed))

    async def _seed_default(self) -> None:
        spec = os.environ.get(INIT_ENV, "")
        if spec.strip() == "none":
            return
        name = model.DEFAULT_NETWORK
        try:
            config = model.parse_init_network(spec)
            await self.create({"name": name, "config": config,
                               "description": "Default machined network"})
        except Exception as e:  # the daemon runs without it; instances get only lo
            log.warning("Could not create the default network %s: %s; the default profile "
                        "gets no nic", name, _message(e))
            return
        profile = db_profiles.get(self._st.db, "default")
        if "eth0" not in profile.devices:
            profile.devices["eth0"] = {"type": "nic", "name": "eth0", "network": name}
            db_profiles.update(self._st.db, profile)
        log.info("Created the default network %s (%s) and added eth0 to the default profile",
                 name, ", ".join(f"{k}={v}" for k, v in sorted(
                     db_networks.get(self._st.db, name).config.items())))

    # ------------------------------------------------------------ reading

    def list(self, recursion: bool) -> list[Any]:
        """Managed networks and the host's other interfaces (not our nics)."""
        managed = db_networks.names(self._st.db)
        others = [link for link in bridge.call(bridge.links)
                  if link.name not in managed and not link.alias.startswith(self.tag + " ")]
        names = sorted([*managed, *(link.name for link in others)])
        if not recursion:
            return [f"/1.0/networks/{n}" for n in names]
        objects = {n: self._managed_object(n) for n in managed}
        for link in others:
            objects[link.name] = model.unmanaged_object(
                link.name, model.link_type(link.name, link.kind, link.ether),
                self._used_by_parent(link.name))
        return [objects[n] for n in names]

    def get(self, name: str) -> dict[str, Any]:
        """The LXD network object; a host interface that is not ours is shown unmanaged."""
        if db_networks.exists(self._st.db, name):
            return self._managed_object(name)
        for link in bridge.call(bridge.links):
            if link.name == name and not link.alias.startswith(self.tag + " "):
                return model.unmanaged_object(name, model.link_type(name, link.kind, link.ether),
                                              self._used_by_parent(name))
        raise NotFound(f"Network {name!r} not found")

    def _managed_object(self, name: str) -> dict[str, Any]:
        rec = db_networks.get(self._st.db, name)
        return model.network_object(name, rec.description, rec.config, self._status(name),
                                    self.used_by(name))

    def _status(self, name: str) -> str:
        return "Errored" if self._unavailable(name) else "Created"

    def _unavailable(self, name: str) -> str | None:
        """Why a managed network does not work now, or None."""
        if name in self._errors:
            return self._errors[name]
        try:
            socket.if_nametoindex(name)
        except OSError:
            return "its bridge does not exist (restart machined to make it again)"
        return None

    def used_by(self, name: str) -> list[str]:
        """Instances (through their own devices or their profiles) and profiles with a nic
        on network `name`, as API URLs."""
        return self._users(lambda dev: model.nic_on(dev, name))

    def _used_by_parent(self, name: str) -> list[str]:
        return self._users(lambda dev: "network" not in dev and model.nic_parent(dev) == name)

    def _users(self, uses: Any) -> list[str]:
        profiles = {p.name: p for p in db_profiles.list_all(self._st.db)}
        found = []
        for rec, devices in self._expanded(profiles):
            if any(uses(d) for d in devices.values()):
                found.append(f"/1.0/instances/{rec.name}")
        for p in profiles.values():
            if any(uses(d) for d in p.devices.values()):
                found.append(f"/1.0/profiles/{p.name}")
        return found

    def _expanded(self, profiles: dict[str, db_profiles.ProfileRecord] | None = None
                  ) -> list[tuple[db_instances.InstanceRecord, dict[str, dict[str, str]]]]:
        profiles = profiles if profiles is not None else {
            p.name: p for p in db_profiles.list_all(self._st.db)}
        out = []
        for rec in db_instances.list_all(self._st.db):
            layers = [(profiles[p].config, profiles[p].devices) for p in rec.profiles
                      if p in profiles]
            _config, devices = instance_model.expand(layers, rec.config, rec.devices)
            out.append((rec, devices))
        return out

    def _host_entries(self, name: str) -> list[HostEntry]:
        """Every instance nic on network `name` whose MAC is known (its hwaddr key, else
        the volatile one machined generated), with its static address if it has one."""
        entries = []
        for rec, devices in self._expanded():
            for dev_name, dev in sorted(devices.items()):
                if not model.nic_on(dev, name):
                    continue
                mac = dev.get("hwaddr") or rec.config.get(f"volatile.{dev_name}.hwaddr", "")
                if mac:
                    entries.append(HostEntry(mac, rec.name, dev.get("ipv4.address", "")))
        return entries

    def leases(self, name: str) -> list[dict[str, str]]:
        rec = db_networks.get(self._st.db, name)
        files = self.files(rec.name)
        try:
            text = files.leases.read_text(errors="replace")
        except OSError:
            text = ""
        return model.lease_objects(model.parse_leases(text), self._host_entries(name),
                                   time.time())

    def state(self, name: str) -> dict[str, Any]:
        """/1.0/networks/<n>/state of a managed network or a host interface."""
        found = bridge.call(bridge.state, name)
        if found is None:
            if db_networks.exists(self._st.db, name):
                raise BadRequest(f"Network {name!r} is unavailable: "
                                 f"{self._unavailable(name)}")
            raise NotFound(f"Network {name!r} not found")
        return found

    def bridge_for(self, name: str) -> BridgeInfo:
        """What a nic on managed network `name` attaches to. NotFound for an unknown
        network, BadRequest when its bridge is not working."""
        rec = db_networks.get(self._st.db, name)
        why = self._unavailable(name)
        if why is not None:
            raise BadRequest(f"Network {name!r} is unavailable: {why}")
        p = model.plan(rec.config)
        return BridgeInfo(ifname=name, mtu=p.mtu, ipv4=p.ipv4, ipv6=p.ipv6)

    def check_static_address(self, network: str, instance: str, device: str,
                             address: str) -> None:
        """A nic's ipv4.address on a managed network must be a host address of its subnet,
        not the bridge's own, and not reserved by another instance (two devices of the
        same instance are the caller's to compare: the stored ones may be about to
        change)."""
        p = model.plan(db_networks.get(self._st.db, network).config)
        what = f"ipv4.address {address!r} of device {device!r}"
        if p.ipv4 is None:
            raise BadRequest(f"Invalid {what}: network {network!r} has no IPv4 subnet "
                             "(ipv4.address is none)")
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            raise BadRequest(f"Invalid {what}: expected an IPv4 address") from None
        net = p.ipv4.network
        if ip not in net or ip in (net.network_address, net.broadcast_address):
            raise BadRequest(f"Invalid {what}: expected a host address of network {network!r} "
                             f"({net})")
        if ip == p.ipv4.ip:
            raise BadRequest(f"Invalid {what}: it is the bridge's own address on network "
                             f"{network!r}")
        mine = set()
        for rec, devices in self._expanded():
            for dev_name, dev in sorted(devices.items()):
                if not model.nic_on(dev, network):
                    continue
                if rec.name == instance:
                    mine.add((dev.get("hwaddr")
                              or rec.config.get(f"volatile.{dev_name}.hwaddr", "")).lower())
                elif dev.get("ipv4.address") == str(ip):
                    raise BadRequest(f"Invalid {what}: it is already reserved by instance "
                                     f"{rec.name!r} (device {dev_name!r})")
        # dnsmasq would not hand out an address another client holds: say so now rather than
        # let the instance silently keep its old one.
        for lease in self._live_leases(network):
            if lease.address == str(ip) and lease.hwaddr not in mine:
                holder = lease.hostname or lease.hwaddr
                raise BadRequest(f"Invalid {what}: it is leased to {holder} until its lease "
                                 "expires or it is released; pick another address")

    def _live_leases(self, name: str) -> list[model.Lease]:
        try:
            text = self.files(name).leases.read_text(errors="replace")
        except OSError:
            return []
        now = time.time()
        return [x for x in model.parse_leases(text) if x.expiry == 0 or x.expiry > now]

    # ------------------------------------------------------------ changes

    async def create(self, request: dict[str, Any]) -> None:
        name = model.check_name(request.get("name"))
        model.check_type(request.get("type"))
        description = _description(request.get("description"))
        config = model.create_defaults(model.validate_keys(request.get("config")))
        async with self._lock:
            if db_networks.exists(self._st.db, name):
                raise Conflict(f"Network {name!r} already exists")
            await asyncio.to_thread(bridge.check_name_free, name, self.tag)
            used = await self._used_subnets(name)
            config = model.resolve_auto(config, used, self.rng)
            p = model.plan(config)
            model.check_overlap(p, used)
            await self._build(name, p, db_networks.NetworkRecord(
                name=name, description=description, config=config,
                created_at=clock.now_iso()))
        log.info("Created network %s", name)

    async def _build(self, name: str, p: Plan, rec: db_networks.NetworkRecord) -> None:
        files = self.files(name)
        async with contextlib.AsyncExitStack() as undo:
            if not files.dir.exists():
                self._make_dir(files)
                undo.callback(shutil.rmtree, files.dir, True)
            created = await asyncio.to_thread(bridge.ensure, name, self.tag, p.mtu, p.hwaddr,
                                              p.ipv4, p.ipv6)
            if created:
                undo.push_async_callback(asyncio.to_thread, bridge.delete, name, self.tag)
            crash.point("network.create.bridge")
            self._write_hosts(name, p)
            undo.push_async_callback(dnsmasq.stop, files)
            await dnsmasq.ensure(files, self._argv(name, p))
            crash.point("network.create.dnsmasq")
            undo.push_async_callback(nat.remove, name, files)
            await nat.apply(name, p, files)
            crash.point("network.create.configured")
            db_networks.create(self._st.db, rec)
            undo.pop_all()
        self._errors.pop(name, None)

    async def update(self, name: str, put: dict[str, Any], patch: bool) -> None:
        async with self._lock:
            old = db_networks.get(self._st.db, name)
            raw = put.get("config")
            given = model.validate_keys(raw)
            if patch:
                unset = {k for k, v in (raw or {}).items() if v == ""}
                config = {k: v for k, v in {**old.config, **given}.items() if k not in unset}
            else:
                config = given
            description = old.description
            if not patch or "description" in put:
                description = _description(put.get("description"))
            used = await self._used_subnets(name)
            config = model.resolve_auto(config, used, self.rng)
            p = model.plan(config)
            model.check_overlap(p, used)
            new = db_networks.NetworkRecord(name, old.type, description, config, old.created_at)
            db_networks.update(self._st.db, new)
            try:
                await self._apply(name, p)
            except Exception as e:
                db_networks.update(self._st.db, old)
                await self._restore(name, old)
                raise _as_machined(e, f"Network {name!r} not changed") from e
            self._errors.pop(name, None)
        log.info("Updated network %s", name)

    async def _restore(self, name: str, rec: db_networks.NetworkRecord) -> None:
        try:
            await self._apply(name, model.plan(rec.config))
        except Exception as e:
            self._errors[name] = _message(e)
            log.error("Network %s could not be set up again: %s", name, _message(e))

    async def rename(self, name: str, new: str) -> None:
        new = model.check_name(new)
        async with self._lock:
            rec = db_networks.get(self._st.db, name)
            if db_networks.exists(self._st.db, new):
                raise Conflict(f"Network {new!r} already exists")
            users = self.used_by(name)
            if users:
                raise BadRequest(f"Network {name!r} is in use by {_users_text(users)}: it "
                                 "cannot be renamed")
            await asyncio.to_thread(bridge.check_name_free, new, self.tag)
            p = model.plan(rec.config)
            old_files, new_files = self.files(name), self.files(new)
            async with contextlib.AsyncExitStack() as undo:
                undo.push_async_callback(self._restore, name, rec)  # last: set up again
                await dnsmasq.stop(old_files)
                await nat.remove(name, old_files)
                await asyncio.to_thread(bridge.rename, name, new, self.tag)
                undo.push_async_callback(_quietly, asyncio.to_thread, bridge.rename, new, name,
                                         self.tag)
                if old_files.dir.exists():
                    os.rename(old_files.dir, new_files.dir)
                    undo.callback(os.rename, new_files.dir, old_files.dir)
                db_networks.rename(self._st.db, name, new)
                undo.pop_all()
            self._errors.pop(name, None)
            try:
                await self._apply(new, p)
            except Exception as e:
                self._errors[new] = _message(e)
                raise _as_machined(e, f"Network {name!r} was renamed {new!r} but could not "
                                      "be set up") from e
        log.info("Renamed network %s to %s", name, new)

    async def delete(self, name: str) -> None:
        async with self._lock:
            db_networks.get(self._st.db, name)
            users = self.used_by(name)
            if users:
                raise BadRequest(f"The network is currently in use by {_users_text(users)}")
            # Set in the same step as the check above, until the row is gone: an instance or
            # profile change committing during the awaits below must not start using it
            # (hooks.check_devices refuses it meanwhile).
            self.deleting.add(name)
            try:
                await self._delete_unused(name)
            finally:
                self.deleting.discard(name)
        log.info("Deleted network %s", name)

    async def _delete_unused(self, name: str) -> None:
        # Devices apply at the next start: a running instance whose nic was detached
        # still has its veth on the bridge.
        ports = await asyncio.to_thread(bridge.ports, name)
        if ports:
            raise BadRequest(f"The network is currently in use by running instances' "
                             f"interfaces {', '.join(ports)}: restart or stop them first")
        files = self.files(name)
        await dnsmasq.stop(files)
        await nat.remove(name, files)
        crash.point("network.delete.stopped")
        await asyncio.to_thread(bridge.delete, name, self.tag)
        crash.point("network.delete.bridge")
        shutil.rmtree(files.dir, ignore_errors=True)
        crash.point("network.delete.files")
        db_networks.delete(self._st.db, name)
        self._errors.pop(name, None)

    async def release_leases(self, name: str, macs: set[str]) -> None:
        """Forget the DHCP leases of `macs` (an instance deleted), so its name stops resolving
        and its address is free at once. dnsmasq keeps leases in memory and rewrites its file,
        so it is stopped, the lines dropped, and started again (~50 ms; LXD sends a
        DHCPRELEASE instead, which dnsmasq only takes from the client's own interface)."""
        if not macs:
            return
        async with self._lock:
            rec = db_networks.get(self._st.db, name)
            files = self.files(name)
            try:
                text = files.leases.read_text(errors="replace")
            except OSError:
                return
            if model.drop_leases(text, macs) == text:
                return
            argv = self._argv(name, model.plan(rec.config))
            await dnsmasq.stop(files)
            try:  # read again: dnsmasq rewrote it until it stopped
                text = files.leases.read_text(errors="replace")
                tmp = files.leases.with_name(files.leases.name + ".tmp")
                tmp.write_text(model.drop_leases(text, macs))
                os.replace(tmp, files.leases)
            finally:
                if argv is not None:
                    await dnsmasq.start(files, argv)
        log.info("Released the DHCP leases of %s on network %s", ", ".join(sorted(macs)), name)

    async def refresh_hosts(self, name: str) -> None:
        """Rewrite dnsmasq's hosts file from the instances' nics on network `name` (MAC,
        name, static address) and make dnsmasq re-read it."""
        rec = db_networks.get(self._st.db, name)
        if self._write_hosts(name, model.plan(rec.config)):
            dnsmasq.reload(self.files(name))

    # ------------------------------------------------------------ applying

    async def _apply(self, name: str, p: Plan) -> None:
        """Make the network's bridge, addresses, dnsmasq and NAT what `p` says, keeping
        what already matches."""
        files = self.files(name)
        self._make_dir(files)
        await asyncio.to_thread(bridge.ensure, name, self.tag, p.mtu, p.hwaddr, p.ipv4,
                                p.ipv6)
        changed = self._write_hosts(name, p)
        done = await dnsmasq.ensure(files, self._argv(name, p))
        if done == "kept" and changed:
            dnsmasq.reload(files)
        await nat.apply(name, p, files)

    def _argv(self, name: str, p: Plan) -> list[str] | None:
        return model.dnsmasq_argv(self._dnsmasq, name, p, self.files(name))

    def _make_dir(self, files: NetFiles) -> None:
        """networks/ and networks/<n>/ are 0711: dnsmasq, running as nobody, reads its hosts
        file there and may list nothing."""
        for path in (files.dir.parent, files.dir):
            path.mkdir(mode=0o711, exist_ok=True)
            os.chmod(path, 0o711)

    def _write_hosts(self, name: str, p: Plan) -> bool:
        """Write the hosts file atomically (0644: dnsmasq reads it as nobody); True if its
        content changed."""
        files = self.files(name)
        text = model.render_hosts(self._host_entries(name), p.dns_mode, p.domain)
        try:
            if files.hosts.read_text() == text:
                return False
        except OSError:
            pass
        tmp = files.hosts.with_name(files.hosts.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            os.fchmod(f.fileno(), 0o644)
        os.replace(tmp, files.hosts)
        return True

    async def _used_subnets(self, name: str) -> list[tuple[model.AnyNetwork, str]]:
        """Subnets a network `name` must not overlap: the other networks', then the host's
        routes and addresses (its own bridge left out)."""
        used: list[tuple[model.AnyNetwork, str]] = []
        for rec in db_networks.list_all(self._st.db):
            if rec.name == name:
                continue
            for key in ("ipv4.address", "ipv6.address"):
                value = rec.config.get(key, "none")
                if value not in ("none", "auto", ""):
                    used.append((ipaddress.ip_interface(value).network, f"network {rec.name}"))
        used += await asyncio.to_thread(bridge.host_subnets, {name})
        return used


async def _quietly(func: Any, *args: Any) -> None:
    """An undo step whose own failure is logged, not raised over the original error."""
    try:
        await func(*args)
    except Exception as e:
        log.warning("Could not undo a network change: %s", _message(e))


def _description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or any(c in value for c in "\0"):
        raise BadRequest("Network description must be a string")
    return value


def _users_text(users: list[str]) -> str:
    return ", ".join(u.removeprefix("/1.0/").replace("s/", " ", 1) for u in users)


def _message(e: BaseException) -> str:
    return e.message if isinstance(e, MachinedError) else str(e) or type(e).__name__


def _as_machined(e: BaseException, prefix: str) -> MachinedError:
    if isinstance(e, MachinedError):
        return type(e)(f"{prefix}: {e.message}")
    return MachinedError(f"{prefix}: {e}")

"""NAT of a managed network with nftables: one table `inet machined_<network>` (masquerade
from the subnet to anything outside it, forwarding accepted on the bridge), loaded only when
ipv4.nat or ipv6.nat is true. Each load replaces the whole table in one nft transaction.
The ruleset text comes from model.nat_ruleset; check() asks nft to validate one without
loading it (`nft -c`), which is what tests use: they never load a masquerade rule.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from machined.errors import InternalError
from machined.network.model import NetFiles, Plan, nat_removal, nat_ruleset
from machined.sys.run import run_async

log = logging.getLogger("machined.network")
NFT = "nft"


async def _nft(args: list[str], text: str, what: str) -> None:
    try:
        rc, _out, err = await run_async([NFT, *args, "-f", "-"], input=text.encode(),
                                        check=False)
    except FileNotFoundError:
        raise InternalError("nft is needed for ipv4.nat and ipv6.nat and was not found "
                            "(Debian: apt install nftables)") from None
    if rc != 0:
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        detail = lines[0] if lines else f"exit status {rc}"
        raise InternalError(f"nft refused {what}: {detail}")


async def check(ruleset: str) -> None:
    """Validate a ruleset against the kernel without applying anything."""
    await _nft(["-c"], ruleset, "the ruleset")


async def apply(name: str, p: Plan, files: NetFiles) -> bool:
    """Load (or replace) the network's NAT table when it has NAT on, else remove a table
    it may have had; returns whether NAT is on. Forwarding is turned on with NAT (with
    ipv4.routing for IPv4), as a NAT without it forwards nothing."""
    ruleset = nat_ruleset(name, p)
    if ruleset is None:
        await remove(name, files)
        return False
    files.nat.touch()  # before loading: a crash in between still gets the table removed
    await _nft([], ruleset, f"the NAT table of network {name}")
    if p.nat4 and p.routing4:
        _enable_forwarding4()
    if p.nat6:
        _enable_forwarding6()
    return True


async def remove(name: str, files: NetFiles, force: bool = False) -> None:
    """Remove the network's table if one may be loaded (the marker says so) or `force`."""
    if not force and not files.nat.exists():
        return
    await _nft([], nat_removal(name), f"removing the NAT table of network {name}")
    files.nat.unlink(missing_ok=True)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _enable_forwarding4() -> None:
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        log.info("Enabling IPv4 forwarding (net.ipv4.ip_forward=1) for NAT")
        _write("/proc/sys/net/ipv4/ip_forward", "1")


def _enable_forwarding6() -> None:
    """Forwarding turns off router-advertisement acceptance where accept_ra is 1, which
    would drop the host's own autoconfigured IPv6 routes: such interfaces get 2 first
    (accept them even when forwarding), as LXD does."""
    conf = Path("/proc/sys/net/ipv6/conf")
    if not conf.is_dir() or (conf / "all/forwarding").read_text().strip() == "1":
        return
    for iface in os.listdir(conf):
        if iface in ("all", "default"):
            continue
        with contextlib.suppress(OSError):
            if (conf / iface / "accept_ra").read_text().strip() == "1":
                _write(os.fspath(conf / iface / "accept_ra"), "2")
    log.info("Enabling IPv6 forwarding (net.ipv6.conf.all.forwarding=1) for NAT")
    _write(os.fspath(conf / "all/forwarding"), "1")

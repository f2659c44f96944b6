"""Networking: managed bridges (pyroute2), dnsmasq DHCP/DNS, NAT (nftables), instance nics
and proxy devices. See docs/ARCHITECTURE.md "Networking"."""

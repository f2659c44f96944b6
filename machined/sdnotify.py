"""systemd's readiness protocol (Type=notify, sd_notify(3)): one datagram per state change on
the socket named by $NOTIFY_SOCKET. Without systemd (the variable unset) it does nothing."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("machined")


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address = address

    @classmethod
    def from_env(cls) -> Notifier:
        """Take $NOTIFY_SOCKET out of the environment (as sd_notify's unset_environment):
        helpers and containers inherit the daemon's environment, and a container's own
        systemd must never talk to the host's."""
        return cls(os.environ.pop("NOTIFY_SOCKET", None) or None)

    def notify(self, message: str) -> None:
        """e.g. "READY=1", "STOPPING=1", "STATUS=..."; failures are logged, never raised."""
        if not self.address:
            return
        address = self.address
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(address)
                s.sendall(message.encode())
        except OSError as e:
            log.warning("Could not notify systemd (%s): %s", message, e)

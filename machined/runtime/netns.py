"""Sockets in a running container's network namespace, made by the daemon without forking.

setns(CLONE_NEWNET) changes only the calling thread, and a socket belongs to the namespace it
was created in for its whole life: a short-lived thread enters the container's namespace
(through a pidfd of its init, so a recycled PID cannot redirect us), creates the socket and
exits. The socket then works from any thread: netlink dumps of the container's interfaces
(network/), connections to services inside it (proxy devices).
"""

from __future__ import annotations

import os
import socket
import threading

from machined.runtime import linux
from machined.runtime.container import RunningContainer


class NamespaceGone(OSError):
    """The container stopped (or its init was replaced) before the socket was made."""


def netns_socket(container: RunningContainer, family: int, kind: int,
                 proto: int = 0) -> socket.socket:
    """A new socket in `container`'s network namespace (raises NamespaceGone once it has
    stopped). Blocking mode, close-on-exec, as socket.socket() makes them."""
    result: list[socket.socket | BaseException] = []
    worker = threading.Thread(target=_make, name="netns-socket",
                              args=(container, family, kind, proto, result))
    worker.start()
    worker.join()
    made = result[0]
    if isinstance(made, BaseException):
        raise made
    return made


def _make(container: RunningContainer, family: int, kind: int, proto: int,
          result: list[socket.socket | BaseException]) -> None:
    try:
        pidfd = linux.pidfd_open(container.init_pid)
    except OSError as e:
        result.append(NamespaceGone(e.errno, f"Instance {container.name!r} is not running"))
        return
    try:
        # Checked after the pidfd is held: the pidfd now pins this very process.
        if linux.proc_starttime(container.init_pid) != container.init_starttime:
            result.append(NamespaceGone(3, f"Instance {container.name!r} is not running"))
            return
        # The thread exits right after: it need not return to the daemon's namespace.
        linux.setns(pidfd, linux.CLONE_NEWNET)
        result.append(socket.socket(family, kind, proto))
    except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
        result.append(e)
    finally:
        os.close(pidfd)

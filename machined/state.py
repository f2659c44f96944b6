"""Everything a service needs, passed explicitly (no globals)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlite_utils import Database

from machined.api.operations import Operations
from machined.locking import InstanceLock
from machined.paths import Paths

if TYPE_CHECKING:
    from machined.storage.pools import Storage


@dataclass
class State:
    db: Database
    paths: Paths
    operations: Operations
    # One lock per instance (and per image fingerprint) serialises conflicting operations;
    # an instance's lock knows what holds it (machined/locking.py: waits and 409s).
    instance_locks: defaultdict[str, InstanceLock] = field(
        default_factory=lambda: defaultdict(InstanceLock))
    image_locks: defaultdict[str, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock))
    # Called with (old, new) server config after a change is stored, so subsystems (image
    # tasks, the HTTPS listener) act on it without a restart. A listener's error is the
    # request's error (the change stays stored: it was valid).
    config_listeners: list[ConfigListener] = field(default_factory=list)
    # The storage pools (storage/pools.py); set by the daemon right after State is built.
    storage: Storage = None  # type: ignore[assignment]


ConfigListener = Callable[[dict[str, str], dict[str, str]], Awaitable[None]]

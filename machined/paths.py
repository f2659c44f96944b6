"""Where machined keeps things under its state directory ($MACHINED_DIR). Pure: no I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = "/var/lib/machined"


def state_dir_from_env() -> Path:
    return Path(os.environ.get("MACHINED_DIR") or DEFAULT_DIR)


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "unix.socket"

    @property
    def database(self) -> Path:
        return self.root / "database" / "machined.db"

    @property
    def images(self) -> Path:
        """Image files exactly as imported: <fp> (metadata or unified) and <fp>.rootfs."""
        return self.root / "images"

    @property
    def pool(self) -> Path:
        return self.pool_dir("default")

    def pool_dir(self, name: str) -> Path:
        """A pool's root when machined chooses it: dir pools without source=, and the mount
        point of btrfs pools on a loop file or block device."""
        return self.root / "storage-pools" / name

    @property
    def disks(self) -> Path:
        """Loop files of btrfs pools made with size= (or nothing): <pool>.img."""
        return self.root / "disks"

    def image_volume(self, fingerprint: str) -> Path:
        """An image unpacked once: metadata.yaml, rootfs/, templates/."""
        return self.pool / "images" / fingerprint

    def container(self, name: str) -> Path:
        return self.pool / "containers" / name

    def rootfs(self, name: str) -> Path:
        return self.container(name) / "rootfs"

    def run(self, name: str) -> Path:
        """Runtime files of a running container: state.json, monitor socket."""
        return self.root / "run" / name

    def logs(self, name: str) -> Path:
        return self.root / "logs" / name

    @property
    def daemon_log(self) -> Path:
        return self.root / "logs" / "machined.log"

    def network(self, name: str) -> Path:
        """A managed network's files: dnsmasq's pid, leases and hosts files. Traversable by
        dnsmasq, which reads its hosts file as nobody (the state directory is 0711)."""
        return self.root / "networks" / name

    @property
    def link_tag(self) -> str:
        """The IFLA_IFALIAS prefix of every host interface this daemon makes (bridges, nic
        host sides): "<tag> <kind> <owner>". Cleanup deletes only interfaces carrying its
        own tag, never another daemon's or the host's."""
        import hashlib

        digest = hashlib.sha256(os.path.abspath(self.root).encode()).hexdigest()[:12]
        return f"machined:{digest}"

    @property
    def tmp(self) -> Path:
        """Scratch space on the same filesystem as the pool, so renames are atomic."""
        return self.root / "tmp"

"""Crash points: named steps inside multi-step operations where a test makes the daemon die
as `kill -9` would (MACHINED_CRASH_AT=<name>), to prove that every step boundary leaves a
state the next start repairs or rolls back (tests/system/test_crash_points.py walks them all).

A point costs one string comparison when the variable is unset. Every name is registered in
POINTS with what has happened by then, so an unknown name fails loudly instead of never
firing."""

from __future__ import annotations

import os
import signal

# name -> what is done when the daemon dies there (what the next start must repair or roll
# back). tests/system/test_crash_points.py walks every one.
POINTS: dict[str, str] = {
    # instances/service.py
    "instance.create.volume": "the instance volume is made; no row names it",
    "instance.create.row": "the instance row is committed; the image's last use not updated",
    "instance.start.templates": "templates rendered, volatile.apply_template cleared; "
                                "nothing started",
    "instance.start.nics": "the nics' host interfaces are made; the container is not started",
    "instance.start.running": "the container runs; proxies not listening, power state not "
                              "recorded",
    "instance.stop.recorded": "volatile.last_state.power=STOPPED recorded; the container "
                              "still runs",
    "instance.stop.stopped": "the container stopped; its nics and proxies not cleaned up",
    "instance.update.applied": "new limits and proxy devices live in the running container; "
                               "the row still has the old config",
    "instance.rename.row": "the row is renamed (the logs move journaled); logs/<old> not "
                           "moved, DHCP hosts not rewritten",
    "instance.delete.row": "the instance and snapshot rows are deleted; volumes, logs/ and "
                           "run/ directories remain",
    "instance.delete.volumes": "the volumes are deleted; logs/, run/ and DHCP entries remain",
    # instances/snapshots.py
    "snapshot.create.copied": "the snapshot volume is in place, the instance still frozen "
                              "for the copy; no row",
    "snapshot.create.row": "the snapshot row is committed; the volume of the snapshot it "
                           "replaced (--reuse) not deleted",
    "snapshot.restore.stopped": "the running instance was stopped for the restore; nothing "
                                "copied",
    "snapshot.restore.volume": "the new instance volume is made from the snapshot; the row "
                               "names the old one",
    "snapshot.restore.row": "the row names the restored volume; the old volume not deleted, "
                            "the instance not started again",
    "instance.copy.snapshots": "the copy's snapshot volumes are made; no row",
    "instance.copy.volume": "every volume of the copy is made; no row",
    "instance.move.volumes": "every volume is copied into the target pool; the rows name "
                             "the old ones",
    "instance.move.row": "the rows name the target pool and the new name; logs not moved, "
                         "old volumes not deleted",
    # images/store.py, download.py (via service.py), service.py, publish.py
    "image.register.received": "an upload, download or publish tarball is in tmp/; nothing "
                               "unpacked",
    "image.register.volume": "the image volume is unpacked in the default pool; no row, the "
                             "files in tmp/",
    "image.register.files": "the image files are renamed into images/; no row",
    "image.download.received": "a download is verified in tmp/; not registered",
    "image.refresh.downloaded": "the new image is registered with its source; the aliases "
                                "still on the old one",
    "image.refresh.switched": "aliases moved and the old row deleted; the old files and "
                              "volume remain",
    "image.publish.packed": "the published tarball is complete in tmp/; not registered",
    # files/service.py
    "files.push.written": "a pushed file's data is in its unnamed temporary file; not "
                          "linked at the target",
    # network/service.py
    "network.create.bridge": "the bridge exists (tagged); no dnsmasq, no row",
    "network.create.dnsmasq": "dnsmasq runs on the bridge; no NAT, no row",
    "network.create.configured": "bridge, dnsmasq and NAT are set up; no row",
    "network.delete.stopped": "dnsmasq stopped, NAT removed; the bridge and the row remain",
    "network.delete.bridge": "the bridge is deleted; the row remains",
    "network.delete.files": "the network's directory is removed; the row remains",
    # storage/pools.py
    "storage.create.made": "a new pool's layout is made (journaled); no marker, no row",
    "storage.create.marker": "the new pool's marker is written; no row",
    "storage.delete.destroyed": "the pool's layout and marker are removed (journaled); the "
                                "row remains",
}

_TARGET = os.environ.get("MACHINED_CRASH_AT", "")


def point(name: str) -> None:
    """Die here, at once and without cleanup, if this is the step MACHINED_CRASH_AT names."""
    if name not in POINTS:
        raise KeyError(f"crash point {name!r} is not registered in machined.crash.POINTS")
    if name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)

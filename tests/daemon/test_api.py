"""The daemon's API and store against a real machined (no container is booted here)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import time

import pytest

from cli.client import Client
from cli.errors import ApiError

pytestmark = pytest.mark.daemon


def make_tarball(path, members, metadata=None):
    """members: list of (TarInfo, bytes|None)."""
    meta = metadata if metadata is not None else (
        f"architecture: x86_64\ncreation_date: {int(time.time())}\n"
        "properties:\n  os: tiny\n  release: '1'\n  description: tiny test image\n").encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name, kind=tarfile.REGTYPE, data=b"", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def tiny_image(tmp_path, name="tiny.tar.gz", extra=()):
    return make_tarball(tmp_path / name, [
        entry("rootfs", tarfile.DIRTYPE), entry("rootfs/etc", tarfile.DIRTYPE),
        entry("rootfs/etc/os-release", data=b"ID=tiny\n"), *extra])


@pytest.fixture
def api(daemon):
    client = Client(os.fspath(daemon.socket))
    yield client
    client.close()


def _half_made(daemon):
    """Uploads and image volumes still in tmp/ (spare copies being made are fine there)."""
    return [p.name for p in (daemon.root / "tmp").iterdir() if not p.name.startswith("spare-")]


def _fingerprints(api):
    return {i["fingerprint"] for i in api.get("/1.0/images?recursion=1")}


def test_socket_is_0660_and_root_owned(daemon):
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0


def test_server_info_and_envelopes(api):
    info = api.get("/1.0")
    assert info["api_version"] == "1.0" and info["environment"]["server"] == "machined"
    resp = api.raw("GET", "/1.0/nothing-here")
    body = json.loads(resp.body)
    assert resp.status == 404 and body["type"] == "error" and body["error_code"] == 404


def test_image_import_alias_list_delete(daemon, api, tmp_path):
    path = tiny_image(tmp_path)
    fp = hashlib.sha256(path.read_bytes()).hexdigest()
    out = daemon.ok("image", "import", os.fspath(path), "--alias", "tiny")
    assert fp in out
    assert (daemon.root / "images" / fp).read_bytes() == path.read_bytes()
    volume = daemon.root / "storage-pools/default/images" / fp
    assert (volume / "rootfs/etc/os-release").read_text() == "ID=tiny\n"
    image = api.get(f"/1.0/images/{fp[:12]}")
    assert image["fingerprint"] == fp and image["aliases"][0]["name"] == "tiny"
    assert image["properties"]["os"] == "tiny" and image["architecture"] == "x86_64"
    listing = daemon.ok("image", "list")
    assert "tiny" in listing and fp[:12] in listing
    again = daemon.mc("image", "import", os.fspath(path))
    assert again.code == 1 and "already exists" in again.err
    assert daemon.mc("image", "alias", "create", "tiny", fp).code == 1
    daemon.ok("image", "alias", "rename", "tiny", "tiny2")
    assert api.get("/1.0/images/aliases/tiny2")["target"] == fp
    daemon.ok("image", "delete", "tiny2")
    assert fp not in _fingerprints(api)
    assert not (daemon.root / "images" / fp).exists() and not volume.exists()


def test_split_image_fingerprint_is_sha256_of_meta_then_rootfs(daemon, api, tmp_path):
    meta = make_tarball(tmp_path / "meta.tar.gz", [])
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        for info, data in (entry("etc", tarfile.DIRTYPE), entry("etc/hostname", data=b"x\n")):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    fp = hashlib.sha256(meta.read_bytes() + rootfs.read_bytes()).hexdigest()
    daemon.ok("image", "import", os.fspath(meta), os.fspath(rootfs))
    assert fp in _fingerprints(api)
    assert (daemon.root / "images" / f"{fp}.rootfs").exists()
    daemon.ok("image", "delete", fp)


HOSTILE = {
    "dotdot": [entry("rootfs", tarfile.DIRTYPE), entry("rootfs/../../escape", data=b"x")],
    "absolute": [entry("rootfs", tarfile.DIRTYPE), entry("/tmp/machined-escape", data=b"x")],
    "symlinked-rootfs": [entry("rootfs", tarfile.SYMTYPE, linkname="/tmp")],
    "through-symlink": [entry("rootfs", tarfile.DIRTYPE),
                        entry("rootfs/a", tarfile.SYMTYPE, linkname="/tmp"),
                        entry("rootfs/a/machined-escape", data=b"x")],
    "hardlink-out": [entry("rootfs", tarfile.DIRTYPE),
                     entry("rootfs/passwd", tarfile.LNKTYPE, linkname="/etc/passwd")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_images_are_rejected_and_leave_nothing(daemon, api, tmp_path, case):
    before = _fingerprints(api)
    path = make_tarball(tmp_path / f"{case}.tar.gz", HOSTILE[case])
    res = daemon.mc("image", "import", os.fspath(path), "--alias", f"bad-{case}")
    written = [p for p in ("/tmp/machined-escape", "/escape", "/tmp/escape")
               if os.path.exists(p)]
    assert not written, f"{case}: wrote outside the image store: {written}"
    if res.code == 0:  # skipped members are acceptable only if nothing escaped
        fp = hashlib.sha256(path.read_bytes()).hexdigest()
        volume = daemon.root / "storage-pools/default/images" / fp
        assert not (volume / "rootfs/passwd").exists() or not os.path.samefile(
            volume / "rootfs/passwd", "/etc/passwd")
        daemon.ok("image", "delete", fp)
    else:
        assert res.err.startswith("Error: ") and len(res.err.strip().splitlines()) == 1
    assert _fingerprints(api) == before
    assert _half_made(daemon) == []


def test_invalid_metadata_is_refused_with_a_clear_error(daemon, api, tmp_path):
    path = make_tarball(tmp_path / "nometa.tar.gz", [entry("rootfs", tarfile.DIRTYPE)],
                        metadata=b"creation_date: 1\n")
    res = daemon.mc("image", "import", os.fspath(path))
    assert res.code == 1 and "architecture" in res.err
    assert _half_made(daemon) == []
    fp = hashlib.sha256(path.read_bytes()).hexdigest()
    assert not (daemon.root / "images" / fp).exists() and fp not in _fingerprints(api)


def test_unknown_instance_and_bad_requests(api):
    with pytest.raises(ApiError) as e:
        api.get("/1.0/instances/nope")
    assert e.value.status == 404 and str(e.value) == "Instance 'nope' not found"
    with pytest.raises(ApiError, match="Unknown action"):
        api.put("/1.0/instances/nope/state", {"action": "explode"})


def test_bad_config_at_create_stores_nothing(daemon, api, tmp_path):
    path = tiny_image(tmp_path, "tiny3.tar.gz")
    fp = hashlib.sha256(path.read_bytes()).hexdigest()
    daemon.ok("image", "import", os.fspath(path))
    try:
        res = daemon.mc("init", fp[:12], "cfg1", "-c", "limits.cpu=zero")
        assert res.code == 1 and "limits.cpu" in res.err and "'zero'" in res.err
        # Refused before any operation starts: never "Starting..." first.
        res = daemon.mc("launch", fp[:12], "cfg1", "-p", "nosuchprofile")
        assert res.code == 1 and "Profile 'nosuchprofile' not found" in res.err
        assert "Starting" not in res.out + res.err
        with pytest.raises(ApiError) as e:
            api.post("/1.0/instances", {"name": "cfg1", "source": {"type": "image",
                     "alias": "no-such-image"}})
        assert e.value.status == 404
        assert "cfg1" not in [i["name"] for i in daemon.instances()]
        assert not list((daemon.root / "storage-pools/default/containers").glob("cfg1-*"))
        daemon.ok("init", fp[:12], "cfg1", "-c", "user.owner=alice")
        inst = api.get("/1.0/instances/cfg1")
        assert inst["config"]["user.owner"] == "alice"
        assert inst["config"]["volatile.base_image"] == fp
        assert inst["expanded_devices"]["root"]["path"] == "/"
        with pytest.raises(ApiError, match="read-only"):
            api.patch("/1.0/instances/cfg1", {"config": {"volatile.base_image": "x"}})
        daemon.ok("delete", "cfg1")
    finally:
        daemon.ok("image", "delete", fp)


def test_state_lives_in_sqlite(daemon, tmp_path):
    import sqlite3

    path = tiny_image(tmp_path, "tiny4.tar.gz")
    daemon.ok("image", "import", os.fspath(path), "--alias", "tiny4")
    daemon.ok("init", "tiny4", "dbcheck")
    try:
        conn = sqlite3.connect(daemon.root / "database/machined.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = [r[0] for r in conn.execute("SELECT name FROM instances")]
        aliases = [r[0] for r in conn.execute("SELECT name FROM images_aliases")]
        ops = conn.execute("SELECT count(*) FROM operations").fetchone()[0]
        conn.close()
        assert "dbcheck" in names and "tiny4" in aliases and ops > 0
    finally:
        daemon.ok("delete", "dbcheck")
        daemon.ok("image", "delete", "tiny4")


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_spare_copy_is_made_ahead_used_by_create_and_removed_with_the_image(daemon, tmp_path):
    path = tiny_image(tmp_path, "tiny5.tar.gz", extra=[entry("rootfs/marker", data=b"m")])
    fp = hashlib.sha256(path.read_bytes()).hexdigest()
    spares = daemon.root / "storage-pools/default/spares"
    daemon.ok("image", "import", os.fspath(path), "--alias", "tiny5")
    assert _wait_for(lambda: len(list(spares.glob(f"{fp}.*"))) == 1)
    (spare,) = spares.glob(f"{fp}.*")
    inode = os.stat(spare / "rootfs/marker").st_ino
    daemon.ok("init", "tiny5", "sp1")
    rootfs = daemon.instance_dir("sp1") / "rootfs"
    assert os.stat(rootfs / "marker").st_ino == inode, "create should take the spare"
    # It is a full copy: changing it leaves the image volume alone.
    (rootfs / "marker").write_bytes(b"changed")
    volume = daemon.root / "storage-pools/default/images" / fp
    assert (volume / "rootfs/marker").read_bytes() == b"m"
    assert _wait_for(lambda: len(list(spares.glob(f"{fp}.*"))) == 1), "refilled after use"
    daemon.ok("delete", "sp1")
    daemon.ok("image", "delete", "tiny5")
    assert _wait_for(lambda: not list(spares.glob(f"{fp}.*")))


def test_a_second_daemon_on_the_same_state_refuses_and_leaves_the_first_alone(daemon, api):
    import subprocess

    res = subprocess.run([daemon.machined_path], env=daemon.env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and "already running" in res.stderr
    assert api.get("/1.0")["api_version"] == "1.0"


@pytest.mark.parametrize("field,value", [("width", 70000), ("height", 0), ("user", -1),
                                         ("group", 2**32), ("user", "root"), ("width", True)])
def test_exec_fields_are_range_checked(api, field, value):
    with pytest.raises(ApiError) as e:
        api.post("/1.0/instances/nope/exec", {"command": ["true"], field: value}, wait=False)
    assert e.value.status == 400 and field in str(e.value)


def test_a_second_daemon_on_the_same_state_directory_is_refused(daemon):
    """One daemon per state directory (a flock held for the daemon's life), even while the
    socket is gone (a stopping daemon closes it before its copies end)."""
    daemon.socket.rename(daemon.socket.with_name("unix.socket.away"))
    try:
        second = subprocess.run([daemon.machined_path], env=daemon.env, capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        daemon.socket.with_name("unix.socket.away").rename(daemon.socket)
    assert second.returncode != 0
    assert "machined is already running on" in second.stderr, second.stderr
    assert daemon.mc("info").code == 0

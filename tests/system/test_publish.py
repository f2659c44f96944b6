"""mc publish: a busybox container (with hostile entries in its rootfs) becomes an image, and
new containers are launched from it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from cli.client import Client
from cli.errors import ApiError
from tests.conftest import built_image, spawn_daemon

pytestmark = pytest.mark.system

MARKER = "published marker 42"
PREFIX = "Instance published with fingerprint: "


@pytest.fixture(scope="module")
def api(daemon):
    client = Client(os.fspath(daemon.socket))
    yield client
    client.close()


@pytest.fixture(scope="module")
def made(daemon):
    """Names (instances, images) the tests create, deleted at the end."""
    names: dict[str, list[str]] = {"instances": [], "images": []}
    yield names
    for name in names["instances"]:
        daemon.mc("delete", "--force", name)
    for fp in names["images"]:
        daemon.mc("image", "delete", fp)


@pytest.fixture(scope="module")
def source(daemon, busybox_image, made):
    """pb-src: a stopped busybox container with a marker file, a link to a host secret, a
    FIFO, a socket, a device node and a user xattr in its rootfs."""
    daemon.ok("launch", busybox_image, "pb-src")
    made["instances"].append("pb-src")
    daemon.ok("exec", "pb-src", "--", "sh", "-c",
              f"echo '{MARKER}' > /root/marker && ln -s /etc/shadow /root/shadow && "
              "ln -s / /root/hostroot && mkfifo /root/fifo")
    daemon.ok("stop", "pb-src")
    rootfs = daemon.instance_dir("pb-src") / "rootfs"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fspath(rootfs / "root/sock"))
    sock.close()
    os.mknod(rootfs / "root/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(rootfs / "root/marker", "user.published", b"yes")
    return "pb-src"


def publish(daemon, made, *args: str) -> str:
    out = daemon.ok("publish", *args)
    line = next(line for line in out.splitlines() if line.startswith(PREFIX))
    fp = line[len(PREFIX):].strip()
    made["images"].append(fp)
    return fp


def image(daemon, name: str) -> dict:
    return yaml.safe_load(daemon.ok("image", "show", name))


def stored(daemon, fp: str) -> Path:
    return daemon.root / "images" / fp


def tmp_leftovers(daemon) -> list[str]:
    return sorted(p.name for p in (daemon.root / "tmp").iterdir() if "publish" in p.name)


@pytest.fixture(scope="module")
def published(daemon, source, made):
    started = time.monotonic()
    fp = publish(daemon, made, source, "--alias", "pb-img")
    print(f"\npublish of busybox (gzip): {time.monotonic() - started:.2f} s")
    return fp


def test_published_image_launches_with_the_instance_files(daemon, published, made):
    daemon.ok("launch", "pb-img", "pb-new")
    made["instances"].append("pb-new")
    assert daemon.ok("exec", "pb-new", "--", "cat", "/root/marker").strip() == MARKER
    # The image's templates came along and were rendered for the new name.
    assert daemon.ok("exec", "pb-new", "--", "cat", "/etc/hostname").strip() == "pb-new"
    assert daemon.ok("exec", "pb-new", "--", "hostname").strip() == "pb-new"
    assert "pb-new" in daemon.ok("exec", "pb-new", "--", "cat", "/etc/hosts")
    rootfs = daemon.instance_dir("pb-new") / "rootfs"
    assert os.getxattr(rootfs / "root/marker", "user.published") == b"yes"
    assert os.readlink(rootfs / "root/shadow") == "/etc/shadow"
    assert stat.S_ISFIFO(os.lstat(rootfs / "root/fifo").st_mode)
    assert not os.path.lexists(rootfs / "root/null")  # device nodes never enter images


def test_image_record(daemon, published):
    img = image(daemon, "pb-img")
    assert img["fingerprint"] == published
    assert img["cached"] is False and img["auto_update"] is False
    assert "update_source" not in img
    assert img["expires_at"].startswith("1970")  # never expires
    assert img["aliases"] == [{"name": "pb-img", "description": ""}]
    assert img["architecture"] == "x86_64"
    props = img["properties"]
    assert props["os"] == "busybox" and props["release"] == "1.35"
    assert props["description"] == "busybox 1.35 (published from pb-src)"
    assert props["serial"] != "20261122_21:09"


def test_fingerprint_is_the_stored_tarball(daemon, published):
    path = stored(daemon, published)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == published
    assert image(daemon, published)["size"] == len(data)
    assert data[:2] == b"\x1f\x8b"  # gzip, the default
    assert tmp_leftovers(daemon) == []


def test_tarball_members(daemon, published):
    """Read-only look at the stored file: links are links, nothing of the host came in."""
    host_shadow = Path("/etc/shadow").read_bytes()
    with tarfile.open(stored(daemon, published), "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[0] == "metadata.yaml"
        meta = yaml.safe_load(tar.extractfile("metadata.yaml").read())
        by_name = {m.name: m for m in members}
        for member in members:
            if member.isreg() and member.size == len(host_shadow):
                assert tar.extractfile(member).read() != host_shadow
    assert abs(meta["creation_date"] - time.time()) < 600
    assert set(meta["templates"]) == {"/etc/hostname", "/etc/hosts"}
    assert {"templates/hostname.tpl", "templates/hosts.tpl", "rootfs/root/marker"} <= set(names)
    shadow, root = by_name["rootfs/root/shadow"], by_name["rootfs/root/hostroot"]
    assert shadow.issym() and shadow.linkname == "/etc/shadow"
    assert root.issym() and root.linkname == "/"
    assert not any(n.startswith("rootfs/root/hostroot/") for n in names)
    assert by_name["rootfs/root/fifo"].isfifo()
    assert "rootfs/root/sock" not in names
    assert by_name["rootfs/root/marker"].pax_headers["SCHILY.xattr.user.published"] == "yes"
    assert by_name["rootfs/root/marker"].uid == 0  # numeric, unshifted container ids


def test_running_instance_is_refused_then_published_with_force(daemon, source, made, api):
    daemon.ok("start", source)
    try:
        res = daemon.mc("publish", source, "--alias", "pb-running")
        assert res.code == 1
        assert "is running" in res.err and "--force" in res.err
        # The API refuses it too (not only the client).
        with pytest.raises(ApiError, match="is running: stop it first"):
            api.post("/1.0/images", {"source": {"type": "instance", "name": source}})
        fp = publish(daemon, made, source, "--force", "--alias", "pb-forced")
        assert image(daemon, "pb-forced")["fingerprint"] == fp
        assert _status(daemon, source) == "Running"
    finally:
        daemon.mc("stop", "--force", source)


def test_force_starts_the_instance_again_when_publishing_fails(daemon, source):
    daemon.ok("start", source)
    template = daemon.instance_dir(source) / "templates/hosts.tpl"
    saved = template.read_bytes()
    try:
        res = daemon.mc("publish", source, "--force", "--alias", "pb-img")
        assert res.code == 1 and "already exist" in res.err  # refused before stopping
        assert _status(daemon, source) == "Running"
        template.unlink()  # the image would be invalid: publishing fails after the stop
        res = daemon.mc("publish", source, "--force", "--alias", "pb-broken")
        assert res.code == 1 and "hosts.tpl" in res.err
        assert _status(daemon, source) == "Running"
        assert daemon.mc("image", "info", "pb-broken").code != 0
        assert tmp_leftovers(daemon) == []
    finally:
        template.write_bytes(saved)
        daemon.mc("stop", "--force", source)


def _status(daemon, name: str) -> str:
    return next(i for i in daemon.instances() if i["name"] == name)["status"]


@pytest.mark.parametrize("algorithm, magic", [
    ("none", None), ("xz", b"\xfd7zXZ\x00"), ("zstd", b"\x28\xb5\x2f\xfd"),
    ("bzip2", b"BZh"), ("lz4", b"\x04\x22\x4d\x18"), ("lzma", b"\x5d\x00\x00"),
])
def test_compressions(daemon, source, made, algorithm, magic):
    fp = publish(daemon, made, source, "--compression", algorithm)
    head = stored(daemon, fp).read_bytes()[:512]
    if magic is None:
        assert head[257:262] == b"ustar"
    else:
        assert head.startswith(magic)
    if algorithm in ("none", "xz"):
        name = f"pb-{algorithm}"
        daemon.ok("launch", fp, name)
        made["instances"].append(name)
        assert daemon.ok("exec", name, "--", "cat", "/root/marker").strip() == MARKER
        daemon.ok("delete", "--force", name)
        made["instances"].remove(name)


def test_server_compression_key(daemon, source, made):
    daemon.ok("config", "set", "images.compression_algorithm", "zstd")
    try:
        fp = publish(daemon, made, source)
    finally:
        daemon.ok("config", "unset", "images.compression_algorithm")
    assert stored(daemon, fp).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"


def _image_count(daemon) -> int:
    return len(json.loads(daemon.ok("image", "list", "--format", "json")))


@pytest.mark.parametrize("args, message", [
    (("--compression", "rar"), 'Invalid compression algorithm "rar": accepted are bzip2, '
                               "gzip, lz4, lzma, xz, zstd, none"),
    (("--alias", "pb-img"), "Image aliases already exist: pb-img"),
    (("myimage",), "There is no image name"),
    (("local:", "k"), "Bad key=value pair"),
    (("--expire", "soon"), 'Invalid expiry date "soon"'),
])
def test_bad_requests_are_one_line_and_leave_nothing(daemon, source, published, args,
                                                     message):
    before = _image_count(daemon)
    res = daemon.mc("publish", source, *args)
    assert res.code == 1
    assert message in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert _image_count(daemon) == before
    assert tmp_leftovers(daemon) == []


@pytest.mark.parametrize("body, message", [
    ({"source": {"type": "instance", "name": "pb-src"}, "compression_algorithm": "rar"},
     "Invalid compression algorithm 'rar': accepted are bzip2"),
    ({"source": {"type": "snapshot", "name": "pb-src/nosnap"}},
     "Snapshot 'nosnap' of instance 'pb-src' not found"),
    ({"source": {"type": "instance", "name": "pb-nope"}}, "'pb-nope' not found"),
    ({"source": {"type": "instance", "name": "pb-src"}, "aliases": [{"name": "pb-img"}]},
     "'pb-img' already exists"),
    ({"source": {"type": "instance", "name": "pb-src"}, "aliases": "pb-x"},
     "must be a list"),
])
def test_api_refusals(daemon, api, source, published, body, message):
    """Refused before packing (in the request or in its operation), nothing kept."""
    before = _image_count(daemon)
    with pytest.raises(ApiError, match=message):
        api.post("/1.0/images", body)
    assert _image_count(daemon) == before
    assert tmp_leftovers(daemon) == []


def test_missing_snapshot_source_from_the_cli(daemon, source):
    res = daemon.mc("publish", f"{source}/nosnap", "--alias", "pb-snap")
    assert res.code == 1 and "Snapshot 'nosnap' of instance 'pb-src' not found" in res.err


def test_properties_expiry_and_public(daemon, source, made):
    fp = publish(daemon, made, source, "--public", "--expire", "2030-01-31T00:00:00Z",
                 "description=Hello world", "custom=1")
    img = image(daemon, fp)
    assert img["public"] is True
    assert img["properties"]["description"] == "Hello world"
    assert img["properties"]["custom"] == "1"
    assert img["properties"]["os"] == "busybox"
    assert img["expires_at"].startswith("2030-01-31")


def test_publishing_is_reproducible(tmp_path):
    """The tarball depends only on the instance's files and the creation time (the daemon's
    clock, held still here): the same publish twice is the same image, and the second
    returns the image the first made, with its own alias added."""
    clock = tmp_path / "clock"
    clock.write_text("2030-05-01T10:00:00Z")
    with spawn_daemon(env={"MACHINED_TEST_CLOCK": os.fspath(clock)}) as other:
        other.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")))
        other.ok("init", built_image_fp(), "pb-det")
        first = publish_on(other, "pb-det", "--alias", "pb-one")
        second = publish_on(other, "pb-det", "--alias", "pb-two")
        assert second == first
        img = image(other, first)
        assert [a["name"] for a in img["aliases"]] == ["pb-one", "pb-two"]
        assert img["properties"]["serial"] == "20300501_10:00"
        assert img["created_at"].startswith("2030-05-01T10:00:00")
        clock.write_text("2030-05-01T10:00:01Z")
        assert publish_on(other, "pb-det") != first


def built_image_fp() -> str:
    (path,) = built_image("busybox", "unified")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish_on(daemon, *args: str) -> str:
    out = daemon.ok("publish", *args)
    return out.strip().splitlines()[-1][len(PREFIX):]


def test_reuse_moves_the_alias_and_deletes_the_old_image(daemon, source, made):
    old = publish(daemon, made, source, "--alias", "pb-reuse")
    rootfs = daemon.instance_dir(source) / "rootfs"
    (rootfs / "root/changed").write_text("new content\n")
    new = publish(daemon, made, source, "--alias", "pb-reuse", "--reuse")
    assert new != old
    assert image(daemon, "pb-reuse")["fingerprint"] == new
    assert daemon.mc("image", "info", old).code != 0
    assert not stored(daemon, old).exists()


def test_publish_into_another_daemon(daemon, source, made):
    """`mc publish c01 lab:`: made here, copied there with its alias, deleted here."""
    before = _image_count(daemon)
    with spawn_daemon() as other:
        daemon.ok("remote", "add", "pb-lab", f"unix://{other.socket}")
        try:
            out = daemon.ok("publish", source, "pb-lab:", "--alias", "pb-there", "k=v")
            fp = out.strip().splitlines()[-1][len(PREFIX):]
            there = yaml.safe_load(daemon.ok("image", "show", "pb-lab:pb-there"))
            assert there["fingerprint"] == fp
            assert there["properties"]["k"] == "v"
            assert hashlib.sha256(stored(other, fp).read_bytes()).hexdigest() == fp
            assert _image_count(daemon) == before
            daemon.ok("launch", "pb-lab:pb-there", "pb-lab:pb-remote")
            assert daemon.ok("exec", "pb-lab:pb-remote", "--", "cat",
                             "/root/marker").strip() == MARKER
            daemon.ok("delete", "--force", "pb-lab:pb-remote")
        finally:
            daemon.mc("remote", "remove", "pb-lab")


def _children(pid: int, names: set[str]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat_line[stat_line.index("(") + 1:stat_line.rindex(")")]
        ppid = int(stat_line[stat_line.rindex(")") + 2:].split()[1])
        if ppid == pid and comm in names:
            found.append(int(entry.name))
    return found


def test_daemon_stopping_mid_publish_leaves_nothing():
    """SIGTERM while tar | xz run: both are killed and reaped, the partial tarball and the
    staging directory are removed, no image is recorded."""
    with spawn_daemon() as other:
        other.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")))
        other.ok("init", built_image_fp(), "pb-cut")
        rootfs = other.instance_dir("pb-cut") / "rootfs"
        (rootfs / "noise").write_bytes(os.urandom(48 << 20))  # xz takes its time on this
        client = Client(os.fspath(other.socket))
        op = client.post("/1.0/images", {"source": {"type": "instance", "name": "pb-cut"},
                                         "compression_algorithm": "xz"}, wait=False)
        deadline = time.monotonic() + 30
        tools: list[int] = []
        while time.monotonic() < deadline and not tools:
            time.sleep(0.1)
            tools = _children(other.proc.pid, {"tar", "xz"})
        assert tools, "the publish never started its tools"
        assert client.get(f"/1.0/operations/{op['id']}")["status"] == "Running"
        client.close()
        other.kill()
        for pid in tools:
            assert not Path(f"/proc/{pid}").exists()  # killed and reaped
        assert tmp_leftovers(other) == []
        assert [p.name for p in (other.root / "images").iterdir()] == [built_image_fp()]
        other.start()
        assert _image_count(other) == 1  # only the busybox image

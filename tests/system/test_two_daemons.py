"""Two machined daemons on this machine: `lab2` listens on HTTPS (127.0.0.1), this client joins
it with a trust token, copies a local image to it (relayed through the client), and the first
daemon launches a container from lab2's public image over the machined protocol."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import spawn_daemon

pytestmark = pytest.mark.system


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab2(daemon):
    with spawn_daemon() as second:
        second.ok("config", "set", "core.https_address", f"127.0.0.1:{_free_port()}")
        out = second.ok("config", "trust", "add", "first-client")
        token = out.strip().splitlines()[-1].strip()
        daemon.ok("remote", "add", "lab2", token)
        yield second
        daemon.mc("remote", "remove", "lab2")


def _images(d, remote: str = "") -> list[dict]:
    args = ["image", "list", "--format", "json"] + ([f"{remote}:"] if remote else [])
    return json.loads(d.ok(*args))


def test_remote_is_listed_as_machined_https(daemon, lab2):
    remotes = json.loads(daemon.ok("remote", "list", "--format", "json"))  # name -> remote, as lxc
    assert remotes["lab2"]["protocol"] == "machined"
    assert remotes["lab2"]["addr"].startswith("https://127.0.0.1:")


def test_copy_to_lab2_and_launch_from_it(daemon, lab2, busybox_image):
    local = {i["fingerprint"]: i for i in _images(daemon)}
    fp = next(f for f, i in local.items()
              if any(a["name"] == busybox_image for a in i.get("aliases") or []))

    daemon.ok("image", "copy", f"local:{busybox_image}", "lab2:", "--alias", "bb-lab2",
              "--public")
    on_lab2 = {i["fingerprint"]: i for i in _images(lab2)}
    assert fp in on_lab2, "the copy keeps the fingerprint"
    assert [a["name"] for a in on_lab2[fp]["aliases"]] == ["bb-lab2"]
    assert on_lab2[fp]["public"] is True
    # The client sees lab2's images through the remote, as lab2 itself lists them.
    assert fp in {i["fingerprint"] for i in _images(daemon, "lab2")}

    # The first daemon has this fingerprint already (it is its own busybox): the launch
    # resolves the alias on lab2 and uses the local copy (the download path is the next test).
    try:
        daemon.ok("launch", "lab2:bb-lab2", "td-c1", timeout=300)
        out = daemon.ok("exec", "td-c1", "--", "cat", "/etc/hostname")
        assert out.strip() == "td-c1"
    finally:
        daemon.mc("delete", "--force", "td-c1")


def test_launch_downloads_from_lab2(daemon, lab2, tmp_path):
    """A lab2-only image (published there) reaches the first daemon over HTTPS, verified,
    cached, with its source recorded."""
    lab2_images = _images(lab2)
    assert lab2_images, "needs the image copied by the previous test"
    fp = lab2_images[0]["fingerprint"]
    # Make an image on lab2 that the first daemon has never seen: launch, change, publish.
    lab2.ok("launch", "bb-lab2", "td-src")
    try:
        lab2.ok("exec", "td-src", "--", "sh", "-c", "echo from-lab2 > /root/marker")
        lab2.ok("stop", "td-src", "--force")
        out = lab2.ok("publish", "td-src", "--alias", "lab2-only", "--public")
    finally:
        lab2.mc("delete", "--force", "td-src")
    new_fp = out.strip().split()[-1]
    assert new_fp != fp
    assert new_fp not in {i["fingerprint"] for i in _images(daemon)}

    try:
        daemon.ok("launch", "lab2:lab2-only", "td-c2", timeout=300)
        assert daemon.ok("exec", "td-c2", "--", "cat", "/root/marker").strip() == "from-lab2"
        cached = {i["fingerprint"]: i for i in _images(daemon)}[new_fp]
        assert cached["cached"] is True
        assert cached["aliases"] == []
        source = cached["update_source"]
        assert source["protocol"] == "machined" and source["alias"] == "lab2-only"
        assert source["server"].startswith("https://127.0.0.1:")
    finally:
        daemon.mc("delete", "--force", "td-c2")
        daemon.mc("image", "delete", new_fp)
        lab2.mc("image", "delete", "lab2-only")


def test_private_lab2_image_is_not_served_to_the_daemon(daemon, lab2):
    lab2_images = _images(lab2)
    fp = lab2_images[0]["fingerprint"]
    lab2.ok("image", "alias", "create", "bb-private", fp)
    _set_public(lab2, fp, False)
    try:
        res = daemon.mc("launch", "lab2:bb-private", "td-c3")
        assert res.code != 0
        assert "td-c3" not in {i["name"] for i in daemon.instances()}
    finally:
        _set_public(lab2, fp, True)
        lab2.mc("image", "alias", "delete", "bb-private")


def _set_public(d, fp: str, public: bool) -> None:
    import yaml

    image = yaml.safe_load(d.ok("image", "show", fp))
    image["public"] = public
    d.ok("image", "edit", fp, input=yaml.safe_dump(image))

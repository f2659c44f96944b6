"""`mc simplestreams add|list|remove` against a real daemon, and the tree read back over
http the way a simplestreams client reads it (tests/streamserver.py on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import urllib.request
from pathlib import Path

import pytest

from cli.client import Client
from machined.images import simplestreams as ss
from tests.conftest import built_image
from tests.streamserver import StreamServer

pytestmark = pytest.mark.system


def local_fp(daemon, alias: str) -> str:
    client = Client(os.fspath(daemon.socket))
    try:
        return str(client.get(f"/1.0/images/aliases/{alias}")["target"])
    finally:
        client.close()


@pytest.fixture(scope="module")
def images(daemon, busybox_image) -> dict[str, str]:
    """alias -> fingerprint: the unified busybox and a split one."""
    meta, rootfs = built_image("busybox", "split")
    split_fp = hashlib.sha256(meta.read_bytes() + rootfs.read_bytes()).hexdigest()
    if daemon.mc("image", "info", split_fp).code != 0:
        daemon.ok("image", "import", os.fspath(meta), os.fspath(rootfs), "--alias",
                  "ss-split")
    elif daemon.mc("image", "info", "ss-split").code != 0:
        daemon.ok("image", "alias", "create", "ss-split", split_fp)
    return {"busybox": local_fp(daemon, busybox_image), "ss-split": split_fp}


@pytest.fixture(scope="module")
def tree(daemon, images, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ss-tree") / "mirror"  # created by add
    out = daemon.ok("simplestreams", "add", os.fspath(root), "busybox", "local:ss-split",
                    "--alias", "bb")
    assert out.count("Added ") == 2, out
    return root


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def test_served_tree_resolves_to_the_local_images(tree, images):
    with StreamServer(tree) as server:
        index = json.loads(fetch(f"{server.url}/streams/v1/index.json"))
        (path,) = ss.index_paths(index)
        products = json.loads(fetch(f"{server.url}/{path}"))
        catalog = ss.Catalog(ss.parse_products(products), platform.machine())
        listed = catalog.list()
        assert {i.fingerprint for i in listed} == set(images.values())
        newest = max(listed, key=lambda i: i.serial)
        assert catalog.resolve("busybox/1.35").fingerprint == newest.fingerprint
        assert catalog.resolve("busybox/1.35/default").fingerprint == newest.fingerprint
        assert catalog.resolve("bb").fingerprint == newest.fingerprint
        for fp in images.values():
            image = catalog.resolve(fp[:16])
            assert image.fingerprint == fp and image.product == "busybox:1.35:amd64:default"
            assert image.properties["os"] == "busybox"
        # every file the products name is served, with that size and sha256
        for image in listed:
            combined = hashlib.sha256()
            for f in image.files:
                data = fetch(f"{server.url}/{f.path}")
                assert (len(data), hashlib.sha256(data).hexdigest()) == (f.size, f.sha256)
                combined.update(data)
            assert combined.hexdigest() == image.fingerprint
        roles = sorted(tuple(f.role for f in i.files) for i in listed)
        assert roles == [("meta", "rootfs"), ("unified",)]


def test_tree_layout(tree, images):
    products = json.loads((tree / "streams/v1/images.json").read_text())
    product = products["products"]["busybox:1.35:amd64:default"]
    assert product["aliases"] == "busybox/1.35/default,busybox/1.35,bb"
    assert len(product["versions"]) == 2
    for serial, version in product["versions"].items():
        assert ss.parse_serial(serial) is not None
        for item in version["items"].values():
            assert item["path"].startswith(f"images/busybox/1.35/amd64/default/{serial}/")
            assert (tree / item["path"]).is_file()
    names = sorted(p.name for p in tree.rglob("*") if p.is_file())
    assert names[:2] == ["images.json", "index.json"]
    assert set(names[2:]) <= {"lxd.tar.xz", "rootfs.squashfs", "rootfs.tar.xz",
                              "lxd_combined.tar.gz"}
    assert not [p for p in tree.rglob(".*")]  # no temporary file left


def test_adding_again_is_a_no_op(daemon, tree, images):
    before = (tree / "streams/v1/images.json").read_bytes()
    out = daemon.ok("simplestreams", "add", os.fspath(tree), "busybox")
    assert f"Image {images['busybox'][:12]} (busybox) is already in" in out
    assert (tree / "streams/v1/images.json").read_bytes() == before


def test_list(daemon, tree, images):
    rows = json.loads(daemon.ok("simplestreams", "list", os.fspath(tree), "--format", "json"))
    assert {r["fingerprint"] for r in rows} == set(images.values())
    table = daemon.ok("simplestreams", "list", os.fspath(tree))
    assert "FINGERPRINT" in table and images["busybox"][:12] in table
    assert "busybox/1.35" in table


def test_remove_drops_the_version_and_its_files(daemon, images, tmp_path):
    root = tmp_path / "t"
    daemon.ok("simplestreams", "add", os.fspath(root), "busybox", "ss-split")
    doc = json.loads((root / "streams/v1/images.json").read_text())
    split_files = [root / f.path for i in ss.parse_products(doc)
                   if i.fingerprint == images["ss-split"] for f in i.files]
    out = daemon.ok("simplestreams", "remove", os.fspath(root), images["ss-split"][:12])
    assert f"Removed {images['ss-split'][:12]}" in out
    doc = json.loads((root / "streams/v1/images.json").read_text())
    assert [i.fingerprint for i in ss.parse_products(doc)] == [images["busybox"]]
    assert not any(p.exists() for p in split_files)
    assert not split_files[0].parent.exists()  # the version's directory went too
    index = json.loads((root / "streams/v1/index.json").read_text())
    assert index["index"]["images"]["products"] == ["busybox:1.35:amd64:default"]
    daemon.ok("simplestreams", "remove", os.fspath(root), images["busybox"])
    doc = json.loads((root / "streams/v1/images.json").read_text())
    assert doc["products"] == {}
    assert not (root / "images" / "busybox").exists()


@pytest.mark.parametrize("args, message", [
    (["remove", "{root}", "ffff"], "No image with fingerprint 'ffff'"),
    (["list", "{root}/nowhere"], "not a simplestreams tree"),
    (["add", "{root}", "no-such-image"], 'Image "no-such-image" not found'),
    (["add", "{root}", "busybox", "--alias", "a,b"], "Alias 'a,b' cannot be published"),
])
def test_errors(daemon, tree, images, args, message):
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    res = daemon.mc("simplestreams", *[a.format(root=tree) for a in args])
    assert res.code == 1 and message in res.err, res
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before


def test_a_malformed_products_file_is_not_built_on(daemon, images, tmp_path):
    (tmp_path / "streams/v1").mkdir(parents=True)
    (tmp_path / "streams/v1/images.json").write_text('{"products": []}')
    res = daemon.mc("simplestreams", "add", os.fspath(tmp_path), "busybox")
    assert res.code == 1 and "is not a usable products file" in res.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["images.json", "streams", "v1"]


def test_a_refused_first_add_leaves_no_directory(daemon, images, tmp_path):
    res = daemon.mc("simplestreams", "add", os.fspath(tmp_path / "new"), "no-such-image")
    assert res.code == 1
    assert list(tmp_path.iterdir()) == []

"""machined.images.simplestreams against real stream documents (tests/fixtures/simplestreams/)
and the writer's round trip. Expected values were worked out by hand from the JSON."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from machined.images import simplestreams as ss

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "simplestreams"

# debian:buster:amd64:default, version 20200304_22:10: the meta item's combined hashes
BUSTER_AMD64_SQUASHFS = "deae1ebaa83fa743ba9c33e942f045f45fd22430c15eb22b65af71a00b106005"
BUSTER_AMD64_ROOTXZ = "a777b01321f0781cd2d8d17ec5d487efb316ed012c24657d57900a2d9ffd9fd9"
BUSTER_AMD64_TEST = "1f5281f52f8f373ea35e6523d9ac2af6091ee81299a6fa3cd5695c63f2f0b187"
BUSTER_ARM64_SQUASHFS = "1053a5edc9897b7461c0c080bdfc0948d33fd134339773a4d0eaf29affdfdd6e"
BUSTER_ARM64_TEST = "d2c572ffd90dad3f755f761eb113d1e501ac2452993894d39f3f7a88ba80c6f3"
STRETCH_AMD64_SQUASHFS = "6b96347da67db6fa1a5229c582d3dfc592160392ba322648fc2e3a57fe981129"
CHR_7204_AMD64_VM = "7ea0b675641457217f05fa0b804ecbf7e150d72868c89cff0204b1bb84d3e89d"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def debian() -> dict:
    return load("products-lxd-container-debian-2020.json")


def catalog(products: dict, host: str = "x86_64") -> ss.Catalog:
    return ss.Catalog(ss.parse_products(products), host)


# ---------------------------------------------------------------------------- index

def test_index_lists_only_image_download_products_files():
    assert ss.index_paths(load("index-for-debian-2020.json")) == ["streams/v1/images.json"]
    assert ss.index_paths(load("index-incus-generated-vm.json")) == ["streams/v1/images.json"]


def test_image_ids_index_has_nothing_to_download():
    assert ss.index_paths(load("index-ubuntu-image-ids-negative.json")) == []


def test_index_entry_without_products_is_skipped():
    index = {"index": {"a": {"datatype": "image-downloads", "path": "a.json", "products": []},
                       "b": {"datatype": "image-downloads", "path": "b.json",
                             "products": ["x"]}}}
    assert ss.index_paths(index) == ["b.json"]


@pytest.mark.parametrize("doc, where", [
    ([], "expected an object with an 'index' object"),
    ({"format": "index:1.0"}, "expected an object with an 'index' object"),
    ({"index": {"x": "nope"}}, "index['x']: expected an object"),
    ({"index": {"x": {"datatype": "image-downloads", "products": "a,b", "path": "p"}}},
     "index['x'].products: expected a list"),
    ({"index": {"x": {"datatype": "image-downloads", "products": ["p"],
                      "path": "../../etc/passwd"}}}, "index['x'].path"),
    ({"index": {"x": {"datatype": "image-downloads", "products": ["p"],
                      "path": "https://elsewhere.example/images.json"}}}, "index['x'].path"),
])
def test_malformed_index_says_where(doc, where):
    with pytest.raises(ss.StreamError, match=f"^index.json: .*{where}".replace("[", r"\[")
                       .replace("]", r"\]").replace("(", r"\(")):
        ss.index_paths(doc)


# ---------------------------------------------------------------------------- products

def test_debian_products_yield_every_meta_root_pair(debian):
    images = ss.parse_products(debian)
    # 8 products x 1 version x (squashfs + root.tar.xz)
    assert len(images) == 16
    assert {i.type for i in images} == {"container"}
    assert {i.architecture for i in images} == {"x86_64", "aarch64"}


def test_debian_image_fields(debian):
    image = catalog(debian).resolve(BUSTER_AMD64_SQUASHFS)
    assert image.product == "debian:buster:amd64:default"
    assert (image.os, image.release, image.variant, image.serial) == \
        ("Debian", "buster", "", "20200304_22:10")
    assert image.created_at == "2020-03-04T22:10:00Z"
    assert image.expires_at == ""
    assert image.properties == {
        "os": "Debian", "release": "buster", "architecture": "amd64",
        "serial": "20200304_22:10", "type": "squashfs",
        "description": "Debian buster amd64 (20200304_22:10)"}
    meta, root = image.files
    assert (meta.role, meta.ftype, meta.size, meta.sha256[:8]) == \
        ("meta", "lxd.tar.xz", 560, "d96e64e8")
    assert meta.path == "images/debian/buster/amd64/default/20200304_22:10/lxd.tar.xz"
    assert (root.role, root.ftype, root.size, root.sha256[:8]) == \
        ("rootfs", "squashfs", 361897984, "da076d1d")
    assert image.size == 560 + 361897984


def test_root_tar_xz_pair_uses_combined_rootxz(debian):
    image = catalog(debian).resolve(BUSTER_AMD64_ROOTXZ)
    assert image.properties["type"] == "root.tar.xz"
    assert image.files[1].path.endswith("/rootfs.tar.xz")
    assert image.size == 560 + 258840276


def test_vm_stream_lists_no_containers():
    vm = ss.parse_products(load("products-incus-generated-vm.json"))
    assert len(vm) == 20 and {i.type for i in vm} == {"virtual-machine"}
    cat = ss.Catalog(vm, "x86_64")
    assert cat.list() == []
    assert cat.aliases() == {}
    assert len(cat.list("virtual-machine")) == 20


def test_vm_only_alias_says_it_exists_as_a_vm():
    cat = ss.Catalog(ss.parse_products(load("products-incus-generated-vm.json")), "x86_64")
    with pytest.raises(ss.NoSuchImage, match=r"couldn't be found for instance type "
                       r"\"container\", but one was found for instance type "
                       r"\"virtual-machine\""):
        cat.resolve("chr/7.20.4/cloud")
    with pytest.raises(ss.NoSuchImage, match="but one was found for instance type"):
        cat.resolve(CHR_7204_AMD64_VM[:12])
    vm = cat.resolve("chr/7.20.4/cloud", "virtual-machine")
    assert vm.fingerprint == CHR_7204_AMD64_VM
    assert vm.properties["type"] == "disk-kvm.img"
    # 12-digit incus-simplestreams serial: date and time
    assert vm.created_at == "2025-11-17T23:24:00Z"


def test_unknown_arch_bad_serial_and_bad_fingerprints_are_skipped(debian):
    doc = copy.deepcopy(debian)
    products = doc["products"]
    products["debian:buster:amd64:default"]["arch"] = "mips-from-mars"
    products["debian:buster:amd64:test"]["versions"] = {
        "2020-03-04": products["debian:buster:amd64:test"]["versions"]["20200304_22:10"]}
    meta = products["debian:stretch:amd64:default"]["versions"]["20200304_22:10"]["items"]
    meta["lxd.tar.xz"]["combined_squashfs_sha256"] = "DEADBEEF"  # not 64 lowercase hex
    meta["lxd.tar.xz"]["combined_rootxz_sha256"] = BUSTER_AMD64_ROOTXZ.upper()
    meta["lxd.tar.xz"]["combined_sha256"] = ""
    fps = {i.fingerprint for i in ss.parse_products(doc)}
    assert len(fps) == 16 - 2 - 2 - 2
    assert BUSTER_AMD64_SQUASHFS not in fps and BUSTER_AMD64_TEST not in fps
    assert STRETCH_AMD64_SQUASHFS not in fps


def test_item_path_leaving_the_tree_is_skipped(debian):
    doc = copy.deepcopy(debian)
    items = doc["products"]["debian:buster:amd64:default"]["versions"]["20200304_22:10"]
    items["items"]["rootfs.squashfs"]["path"] = "https://elsewhere.example/rootfs.squashfs"
    items["items"]["rootfs.tar.xz"]["path"] = "images/../../../rootfs.tar.xz"
    fps = {i.fingerprint for i in ss.parse_products(doc)}
    assert BUSTER_AMD64_SQUASHFS not in fps and BUSTER_AMD64_ROOTXZ not in fps
    assert len(fps) == 14


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d.update(products=[]), "products: expected a 'products' object"),
    (lambda d: d["products"].update(x="str"), r"products\['x'\]: expected an object"),
    (lambda d: d["products"]["debian:buster:amd64:default"].update(versions=[1]),
     r"products\['debian:buster:amd64:default'\].versions: expected an object"),
    (lambda d: d["products"]["debian:buster:amd64:default"]["versions"]["20200304_22:10"]
     ["items"]["rootfs.squashfs"].update(size="big"),
     r"items\['rootfs.squashfs'\].size: expected a non-negative integer, got 'big'"),
    (lambda d: d["products"]["debian:buster:amd64:default"]["versions"]["20200304_22:10"]
     ["items"]["rootfs.squashfs"].update(size=True), r"size: expected a non-negative"),
    (lambda d: d["products"]["debian:buster:amd64:default"].update(os=7),
     r"products\['debian:buster:amd64:default'\].os: expected a string, got 7"),
])
def test_malformed_products_raise_stream_error_naming_where(debian, mutate, where):
    doc = copy.deepcopy(debian)
    mutate(doc)
    with pytest.raises(ss.StreamError, match=where):
        ss.parse_products(doc)


def test_products_must_be_an_object():
    with pytest.raises(ss.StreamError, match="products: expected a JSON object"):
        ss.parse_products(["not", "a", "products", "file"])


@pytest.mark.parametrize("serial, when", [
    ("20200304_22:10", "2020-03-04T22:10:00Z"),
    ("20200304_2210", "2020-03-04T22:10:00Z"),
    ("202003042210", "2020-03-04T22:10:00Z"),
    ("20200304", "2020-03-04T00:00:00Z"),
    ("20200304.1", "2020-03-04T00:00:00Z"),  # LXD: the first 8 characters
    ("20200304_2599", "2020-03-04T00:00:00Z"),
])
def test_serial_to_creation_time(serial, when):
    moment = ss.parse_serial(serial)
    assert moment is not None and ss.iso(moment) == when


@pytest.mark.parametrize("serial", ["", "2020", "20201304", "20200230_1200", "v1", "2020-3-4x"])
def test_unparseable_serials(serial):
    assert ss.parse_serial(serial) is None


def test_support_eol_becomes_expires_at(debian):
    doc = copy.deepcopy(debian)
    doc["products"]["debian:buster:amd64:default"]["support_eol"] = "2024-06-30"
    doc["products"]["debian:buster:amd64:default"]["versions"]["20200304_22:10"]["label"] = "x"
    doc["products"]["debian:buster:amd64:default"]["requirements"] = {"secureboot": "false"}
    image = catalog(doc).resolve("debian/buster")
    assert image.expires_at == "2024-06-30T00:00:00Z"
    assert image.properties["label"] == "x"
    assert image.properties["requirements.secureboot"] == "false"
    assert image.properties["description"] == "Debian buster amd64 (x) (20200304_22:10)"


# ---------------------------------------------------------------------------- resolution

def test_buster_on_x86_64_is_the_amd64_squashfs(debian):
    cat = catalog(debian)
    assert cat.resolve("debian/buster").fingerprint == BUSTER_AMD64_SQUASHFS
    assert cat.resolve("debian/buster/amd64").fingerprint == BUSTER_AMD64_SQUASHFS
    assert cat.resolve("debian/buster/default").fingerprint == BUSTER_AMD64_SQUASHFS
    assert cat.resolve("debian/buster/test").fingerprint == BUSTER_AMD64_TEST
    assert cat.resolve("debian/stretch").fingerprint == STRETCH_AMD64_SQUASHFS


def test_explicit_arch_alias_picks_that_arch(debian):
    cat = catalog(debian)
    image = cat.resolve("debian/buster/arm64")
    assert image.fingerprint == BUSTER_ARM64_SQUASHFS and image.architecture == "aarch64"
    assert cat.resolve("debian/buster/test/arm64").fingerprint == BUSTER_ARM64_TEST


def test_arm64_host_prefers_its_own_arch(debian):
    cat = catalog(debian, "aarch64")
    assert cat.resolve("debian/buster").fingerprint == BUSTER_ARM64_SQUASHFS
    assert cat.resolve("debian/buster/test").fingerprint == BUSTER_ARM64_TEST
    assert cat.resolve("debian/buster/amd64").fingerprint == BUSTER_AMD64_SQUASHFS


def test_personality_is_used_when_no_native_image(debian):
    doc = copy.deepcopy(debian)
    doc["products"]["debian:buster:amd64:default"]["arch"] = "i386"
    cat = catalog(doc)
    # the i386 product claims debian/buster for i686; amd64 has none now, arm64 still does
    image = cat.resolve("debian/buster")
    assert image.architecture == "i686" and image.fingerprint == BUSTER_AMD64_SQUASHFS
    assert cat.resolve("debian/buster/i386").fingerprint == BUSTER_AMD64_SQUASHFS


def test_rootxz_only_product_resolves_to_its_rootxz_image(debian):
    doc = copy.deepcopy(debian)
    items = doc["products"]["debian:buster:amd64:default"]["versions"]["20200304_22:10"]
    del items["items"]["rootfs.squashfs"]
    assert catalog(doc).resolve("debian/buster").fingerprint == BUSTER_AMD64_ROOTXZ
    # without combined_rootxz_sha256, combined_sha256 is the fingerprint
    meta = items["items"]["lxd.tar.xz"]
    del meta["combined_rootxz_sha256"]
    meta["combined_sha256"] = "ab" * 32
    assert catalog(doc).resolve("debian/buster").fingerprint == "ab" * 32


def test_newer_serial_wins_and_squashfs_beats_rootxz(debian):
    doc = copy.deepcopy(debian)
    versions = doc["products"]["debian:buster:amd64:default"]["versions"]
    newer = copy.deepcopy(versions["20200304_22:10"])
    newer["items"]["lxd.tar.xz"]["combined_rootxz_sha256"] = "12" * 32
    newer["items"]["lxd.tar.xz"]["combined_squashfs_sha256"] = "34" * 32
    versions["20200305_01:00"] = newer
    cat = catalog(doc)
    assert cat.resolve("debian/buster").fingerprint == "34" * 32
    old = cat.resolve(BUSTER_AMD64_SQUASHFS)
    assert old.aliases == ()  # still listed and reachable by fingerprint, but no alias


def test_fingerprint_prefix(debian):
    cat = catalog(debian)
    assert cat.resolve("deae1eb").fingerprint == BUSTER_AMD64_SQUASHFS
    assert cat.resolve("DEAE1EB").fingerprint == BUSTER_AMD64_SQUASHFS
    assert cat.resolve(BUSTER_ARM64_TEST).fingerprint == BUSTER_ARM64_TEST


def test_ambiguous_prefix(debian):
    # deae1eba... and d2c572ff... both start with "d"
    with pytest.raises(ss.NoSuchImage, match="'d' is ambiguous: it matches 2 images"):
        catalog(debian).resolve("d")


@pytest.mark.parametrize("name", ["debian/bullseye", "ubuntu/22.04", "ffff", ""])
def test_unknown_alias(debian, name):
    with pytest.raises(ss.NoSuchImage, match="not found: no alias or fingerprint"):
        catalog(debian).resolve(name)


def test_unknown_image_type_is_refused(debian):
    with pytest.raises(ValueError, match="Unknown image type 'vm'"):
        catalog(debian).resolve("debian/buster", "vm")


def test_aliases_table_and_won_aliases(debian):
    cat = catalog(debian)
    table = cat.aliases()
    assert table["debian/buster"] == BUSTER_AMD64_SQUASHFS
    assert table["debian/buster/arm64"] == BUSTER_ARM64_SQUASHFS
    assert table["debian/stretch/test"].startswith("4a26115a")
    won = cat.resolve("debian/buster").aliases
    assert {"debian/buster", "debian/buster/amd64", "debian/buster/default"} <= set(won)
    assert "debian/buster/arm64" not in won
    # the root.tar.xz sibling loses every alias to the squashfs one
    assert cat.resolve(BUSTER_AMD64_ROOTXZ).aliases == ()
    listed = cat.list()
    assert listed[0].fingerprint == BUSTER_AMD64_SQUASHFS  # §4.3 order
    assert len(listed) == 16


# ---------------------------------------------------------------------------- writer

META = b"metadata tarball bytes"
ROOT = b"squashfs bytes" * 100
UNIFIED = b"unified tarball bytes"
PROPS = {"os": "BusyBox", "release": "1.35", "variant": "default",
         "description": "BusyBox 1.35"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_files(prefix: str, meta: bytes = META, root: bytes = ROOT,
                rootfs_ftype: str = "squashfs") -> list[ss.StreamFile]:
    name = "rootfs.squashfs" if rootfs_ftype == "squashfs" else "rootfs.tar.xz"
    return [ss.StreamFile("meta", f"{prefix}/lxd.tar.xz", sha(meta), len(meta), "lxd.tar.xz"),
            ss.StreamFile("rootfs", f"{prefix}/{name}", sha(root), len(root), rootfs_ftype)]


def add_split(doc: dict, created: str = "2024-05-06T07:08:09Z", meta: bytes = META,
              root: bytes = ROOT, aliases: list[str] | None = None) -> tuple[dict, str]:
    fp = sha(meta + root)
    prefix = ss.version_dir(PROPS, "x86_64", ss.serial_for(created))
    doc = ss.add_image(doc, fingerprint=fp, properties=PROPS, architecture="x86_64",
                       created_at=created, aliases=aliases or [],
                       files=split_files(prefix, meta, root))
    return doc, fp


def test_split_round_trip():
    doc, fp = add_split({}, aliases=["bb"])
    assert doc["content_id"] == "images" and doc["format"] == "products:1.0"
    product = doc["products"]["BusyBox:1.35:amd64:default"]
    assert product["aliases"] == "busybox/1.35/default,busybox/1.35,bb"
    assert list(product["versions"]) == ["20240506_0708"]
    meta = product["versions"]["20240506_0708"]["items"]["lxd.tar.xz"]
    # the combined hash is sha256(meta bytes || rootfs bytes)
    assert meta["combined_squashfs_sha256"] == hashlib.sha256(META + ROOT).hexdigest() == fp
    (image,) = ss.parse_products(json.loads(json.dumps(doc)))
    assert image.fingerprint == fp and image.type == "container"
    assert image.architecture == "x86_64" and image.product == "BusyBox:1.35:amd64:default"
    assert (image.os, image.release, image.variant) == ("BusyBox", "1.35", "default")
    assert image.serial == "20240506_0708" and image.created_at == "2024-05-06T07:08:00Z"
    assert image.aliases == ("busybox/1.35/default", "busybox/1.35", "bb")
    assert image.files == tuple(split_files(
        "images/busybox/1.35/amd64/default/20240506_0708"))
    assert image.size == len(META) + len(ROOT)
    cat = ss.Catalog([image], "x86_64")
    assert cat.resolve("busybox/1.35").fingerprint == fp
    assert cat.resolve("bb/amd64").fingerprint == fp


def test_rootxz_split_sets_both_combined_fields():
    prefix = "images/busybox/1.35/amd64/default/20240506_0708"
    fp = sha(META + ROOT)
    doc = ss.add_image({}, fingerprint=fp, properties=PROPS, architecture="x86_64",
                       created_at="2024-05-06T07:08:09Z", aliases=[],
                       files=split_files(prefix, rootfs_ftype="root.tar.xz"))
    items = doc["products"]["BusyBox:1.35:amd64:default"]["versions"]["20240506_0708"]["items"]
    assert items["lxd.tar.xz"]["combined_rootxz_sha256"] == fp
    assert items["lxd.tar.xz"]["combined_sha256"] == fp
    (image,) = ss.parse_products(doc)
    assert image.fingerprint == fp and image.properties["type"] == "root.tar.xz"


def test_unified_round_trip():
    fp = sha(UNIFIED)
    files = [ss.StreamFile("unified", "images/x/lxd_combined.tar.gz", fp, len(UNIFIED),
                           "lxd_combined.tar.gz")]
    doc = ss.add_image({}, fingerprint=fp, properties={**PROPS, "variant": "tiny"},
                       architecture="aarch64", created_at="2024-05-06T07:08:09+02:00",
                       aliases=[], files=files)
    product = doc["products"]["BusyBox:1.35:arm64:tiny"]
    assert product["aliases"] == "busybox/1.35/tiny"
    assert product["versions"]["20240506_0508"]["items"]["lxd_combined.tar.gz"]["sha256"] == fp
    (image,) = ss.parse_products(doc)
    assert image.fingerprint == fp and image.files == tuple(files)
    assert image.properties["type"] == "tar.gz" and image.architecture == "aarch64"
    with pytest.raises(ss.StreamError, match="unified image's fingerprint is its file's sha256"):
        ss.add_image({}, fingerprint="0" * 64, properties=PROPS, architecture="x86_64",
                     created_at="2024-05-06T07:08:09Z", aliases=[], files=files)


def test_newer_version_wins_and_serial_clash_is_bumped():
    doc, first = add_split({})
    doc, second = add_split(doc, created="2024-05-06T07:08:59Z", root=b"other rootfs")
    versions = doc["products"]["BusyBox:1.35:amd64:default"]["versions"]
    assert list(versions) == ["20240506_0708", "20240506_0709"]  # same minute: bumped
    cat = ss.Catalog(ss.parse_products(doc), "x86_64")
    assert cat.resolve("busybox/1.35").fingerprint == second
    assert cat.resolve(first).aliases == ()
    # adding an image already present changes nothing
    assert add_split(doc, created="2030-01-01T00:00:00Z")[0] == doc


def test_remove_image_drops_its_version_and_product():
    doc, first = add_split({})
    doc, second = add_split(doc, created="2024-06-01T00:00:00Z", root=b"other rootfs")
    after = ss.remove_image(doc, second)
    assert [i.fingerprint for i in ss.parse_products(after)] == [first]
    assert list(after["products"]["BusyBox:1.35:amd64:default"]["versions"]) == \
        ["20240506_0708"]
    assert ss.remove_image(after, first)["products"] == {}
    assert ss.make_index(ss.remove_image(after, first))["index"]["images"]["products"] == []
    with pytest.raises(ss.NoSuchImage, match="is not in this stream"):
        ss.remove_image(after, second)


def test_remove_one_root_of_a_shared_meta_keeps_the_other(debian):
    after = ss.remove_image(debian, BUSTER_AMD64_SQUASHFS)
    fps = {i.fingerprint for i in ss.parse_products(after)}
    assert BUSTER_AMD64_SQUASHFS not in fps and BUSTER_AMD64_ROOTXZ in fps
    items = after["products"]["debian:buster:amd64:default"]["versions"]["20200304_22:10"]
    assert set(items["items"]) == {"lxd.tar.xz", "rootfs.tar.xz"}
    assert "combined_squashfs_sha256" not in items["items"]["lxd.tar.xz"]


def test_make_index_round_trips_through_index_paths():
    doc, _ = add_split({})
    index = ss.make_index(doc)
    assert index["format"] == "index:1.0"
    assert index["index"]["images"]["products"] == ["BusyBox:1.35:amd64:default"]
    assert ss.index_paths(index) == [ss.PRODUCTS_PATH]


@pytest.mark.parametrize("props, arch, message", [
    ({"release": "1"}, "x86_64", "no os property"),
    ({"os": "x"}, "x86_64", "no release property"),
    ({"os": "x", "release": "1"}, "mips", "Architecture 'mips' cannot be published"),
    ({"os": "x", "release": "../.."}, "x86_64", "release '../..' cannot name a directory"),
    ({"os": "x/y", "release": "1"}, "x86_64", "os 'x/y' cannot name a directory"),
])
def test_writer_refuses_what_cannot_be_published(props, arch, message):
    with pytest.raises(ss.StreamError, match=message):
        ss.version_dir(props, arch, "20240101_0000")


def test_writer_refuses_bad_input():
    files = split_files("images/a")
    with pytest.raises(ss.StreamError, match="not 64 lowercase hex"):
        ss.add_image({}, fingerprint="abc", properties=PROPS, architecture="x86_64",
                     created_at="2024-01-01T00:00:00Z", aliases=[], files=files)
    with pytest.raises(ss.StreamError, match="created_at: expected an ISO 8601 time"):
        ss.add_image({}, fingerprint="a" * 64, properties=PROPS, architecture="x86_64",
                     created_at="yesterday", aliases=[], files=files)
    with pytest.raises(ss.StreamError, match="Alias 'a,b' cannot be published"):
        ss.add_image({}, fingerprint="a" * 64, properties=PROPS, architecture="x86_64",
                     created_at="2024-01-01T00:00:00Z", aliases=["a,b"], files=files)
    with pytest.raises(ss.StreamError, match="Cannot publish files"):
        ss.add_image({}, fingerprint="a" * 64, properties=PROPS, architecture="x86_64",
                     created_at="2024-01-01T00:00:00Z", aliases=[], files=files[::-1])
    bad = [ss.StreamFile("meta", "/abs/lxd.tar.xz", sha(META), 1, "lxd.tar.xz"), files[1]]
    with pytest.raises(ss.StreamError, match="needs a relative path"):
        ss.add_image({}, fingerprint="a" * 64, properties=PROPS, architecture="x86_64",
                     created_at="2024-01-01T00:00:00Z", aliases=[], files=bad)


def test_serial_format_sorts_and_parses():
    serials = [ss.serial_for(t) for t in ("2023-12-31T23:59:00Z", "2024-01-01T00:00:00Z",
                                           "2024-01-01T00:01:00+00:00")]
    assert serials == sorted(serials) == ["20231231_2359", "20240101_0000", "20240101_0001"]
    assert [ss.iso(ss.parse_serial(s)) for s in serials] == \
        ["2023-12-31T23:59:00Z", "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]


@pytest.mark.parametrize("fp, ok", [("a" * 64, True), ("A" * 64, False), ("a" * 63, False),
                                    ("g" * 64, False), ("a" * 65, False)])
def test_valid_fingerprint(fp, ok):
    assert ss.valid_fingerprint(fp) is ok

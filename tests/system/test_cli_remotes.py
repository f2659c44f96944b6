"""What mc users see of remotes and remote images, end to end: `mc remote ...` against
simplestreams trees served on 127.0.0.1 (http, and https with a self-signed certificate) and a
second machined; `mc image list|info|copy|refresh|edit` across remotes; `mc launch
<remote>:<alias>`. Every command runs as a user would run it (the mc executable, non-TTY)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from machined.images import simplestreams as ss
from tests.conftest import Daemon, built_image, needs_root, spawn_daemon
from tests.streamserver import StreamServer, make_certificate

pytestmark = [pytest.mark.system, needs_root]

PROPS = {"os": "busybox", "release": "1.35", "variant": "default",
         "description": "BusyBox 1.35 (cli test stream)"}
ALIAS = "busybox/1.35"


class Tree:
    """A simplestreams tree of unified images, written with the daemon's own pure writer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.products = ss.empty_products()

    def add(self, data: bytes, created_at: str, aliases: tuple[str, ...] = ()) -> str:
        fp = hashlib.sha256(data).hexdigest()
        vdir = ss.version_dir(PROPS, "x86_64", ss.pick_serial(self.products, PROPS, "x86_64",
                                                              created_at))
        path = f"{vdir}/lxd_combined.tar.gz"
        (self.root / vdir).mkdir(parents=True, exist_ok=True)
        (self.root / path).write_bytes(data)
        files = [ss.StreamFile("unified", path, fp, len(data), "lxd_combined.tar.gz")]
        self.products = ss.add_image(self.products, fingerprint=fp, properties=PROPS,
                                     architecture="x86_64", created_at=created_at,
                                     aliases=list(aliases), files=files)
        streams = self.root / "streams" / "v1"
        streams.mkdir(parents=True, exist_ok=True)
        (streams / "images.json").write_text(json.dumps(self.products))
        (streams / "index.json").write_text(json.dumps(ss.make_index(self.products)))
        return fp


@dataclass
class World:
    daemon: Daemon
    tree: Tree
    http: StreamServer
    https: StreamServer
    unified: bytes
    fp: str
    secure_fp: str

    def mc(self, *args: str) -> tuple[int, str, str]:
        # input="" : stdin is not a terminal, as in scripts (no certificate question)
        res = self.daemon.mc(*args, input="")
        return res.code, res.out, res.err

    def ok(self, *args: str) -> str:
        return self.daemon.ok(*args, input="")

    def fails(self, *args: str) -> str:
        """The one-line error of a command that must fail."""
        code, out, err = self.mc(*args)
        assert code != 0, f"mc {' '.join(args)} succeeded: {out}"
        assert err.startswith("Error: ") and err.count("\n") == 1, err
        return err

    @property
    def conf(self) -> Path:
        return Path(self.daemon.env["MC_CONF"])

    def remotes(self) -> dict:
        return json.loads(self.ok("remote", "list", "--format", "json"))

    def images(self, remote: str = "") -> dict[str, dict]:
        listed = json.loads(self.ok("image", "list", remote, "--format", "json")
                            if remote else self.ok("image", "list", "--format", "json"))
        return {i["fingerprint"]: i for i in listed}


def ensure_bb(world: World) -> None:
    """A local image aliased bb (made by the copy test; imported when run alone)."""
    if world.mc("image", "info", "bb")[0] != 0:
        world.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
                 "--alias", "bb")


def ensure_lab(world: World) -> None:
    """The remote `lab` (added by the first test; added here when run alone)."""
    if "lab" not in world.remotes():
        world.ok("remote", "add", "lab", world.http.url, "--protocol", "simplestreams")


def config_bytes(world: World) -> bytes:
    path = world.conf / "config.yml"
    return path.read_bytes() if path.exists() else b""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("cl")
    (unified,) = built_image("busybox", "unified")
    data = unified.read_bytes()
    tree = Tree(base / "tree")
    fp = tree.add(data, "2026-01-01T00:00:00Z")
    # the https server serves an image of its own (another gzip member of the same tar)
    secure = Tree(base / "secure")
    secure_fp = secure.add(gzip.compress(gzip.decompress(data), mtime=1_650_000_000),
                           "2026-01-01T00:00:00Z")
    crt, key = make_certificate(base, "selfsigned")
    with spawn_daemon() as daemon, StreamServer(tree.root) as http, \
            StreamServer(secure.root, tls=(crt, key)) as https:
        yield World(daemon, tree, http, https, data, fp, secure_fp)


# -- remote add / list / static remotes ---------------------------------------------------------
def test_defaults_and_adding_a_simplestreams_remote(world: World) -> None:
    remotes = world.remotes()
    assert set(remotes) == {"local", "images", "ubuntu", "ubuntu-daily"}
    assert remotes["local"]["static"] is True and remotes["images"]["static"] is False
    table = world.ok("remote", "list")
    assert "local (current)" in table and "PROTOCOL" in table and "AUTH TYPE" in table
    assert world.ok("remote", "get-default") == "local\n"

    world.ok("remote", "add", "lab", world.http.url + "/", "--protocol", "simplestreams")
    lab = world.remotes()["lab"]
    assert lab == {"addr": world.http.url, "protocol": "simplestreams", "auth_type": "none",
                   "public": True, "static": False}
    # the file is valid YAML with only what is not built in
    saved = yaml.safe_load((world.conf / "config.yml").read_text())
    assert saved["default-remote"] == "local"
    assert saved["remotes"]["lab"]["addr"] == world.http.url
    assert "local" not in saved["remotes"]
    assert oct((world.conf / "config.yml").stat().st_mode & 0o777) == "0o600"


def test_bad_remotes_are_refused_in_one_line_and_nothing_is_saved(world: World) -> None:
    before = (world.conf / "config.yml").read_bytes()
    assert "http:// is only for simplestreams" in world.fails(
        "remote", "add", "x", world.http.url)
    assert "is not a simplestreams server" in world.fails(
        "remote", "add", "x", world.http.url + "/nothing", "--protocol", "simplestreams")
    port = closed_port()
    assert "Could not reach" in world.fails(
        "remote", "add", "x", f"http://127.0.0.1:{port}", "--protocol", "simplestreams")
    assert 'The remote "lab" already exists' in world.fails(
        "remote", "add", "lab", world.http.url, "--protocol", "simplestreams")
    assert "Invalid remote name" in world.fails(
        "remote", "add", "a/b", world.http.url, "--protocol", "simplestreams")
    assert (world.conf / "config.yml").read_bytes() == before


def test_static_and_default_remotes_are_protected(world: World) -> None:
    ensure_lab(world)
    assert 'The remote "local" is static' in world.fails("remote", "remove", "local")
    assert 'The remote "ubuntu" is static' in world.fails("remote", "rename", "ubuntu", "u")
    assert 'The remote "local" is static' in world.fails(
        "remote", "set-url", "local", "unix:///tmp/x.socket")
    assert "doesn't exist" in world.fails("remote", "switch", "nowhere")
    world.ok("remote", "switch", "lab")
    try:
        assert world.ok("remote", "get-default") == "lab\n"
        assert "lab (current)" in world.ok("remote", "list")
        assert "is the default remote" in world.fails("remote", "remove", "lab")
        # instance commands go to the default remote, which has no instances API
        assert "simplestreams image server" in world.fails("list")
        # images do: `mc image list` browses the default remote
        assert world.fp in world.images()
    finally:
        world.ok("remote", "switch", "local")


def test_rename_and_remove(world: World) -> None:
    world.ok("remote", "add", "tmp1", world.http.url, "--protocol", "simplestreams")
    world.ok("remote", "rename", "tmp1", "tmp2")
    assert "tmp2" in world.remotes() and "tmp1" not in world.remotes()
    world.ok("remote", "mv", "tmp2", "tmp3")
    world.ok("remote", "rm", "tmp3")
    assert "tmp3" not in world.remotes()


# -- browsing a simplestreams remote -----------------------------------------------------------
def test_image_list_and_info_of_a_simplestreams_remote(world: World) -> None:
    ensure_lab(world)
    listed = world.images("lab:")
    assert list(listed) == [world.fp]
    image = listed[world.fp]
    assert {"name": ALIAS, "description": ""} in image["aliases"]
    table = world.ok("image", "list", "lab:")
    assert world.fp[:12] in table and ALIAS in table and "CONTAINER" in table
    assert world.fp[:12] in world.ok("image", "list", "lab:", "os=busybox")
    assert world.fp[:12] not in world.ok("image", "list", "lab:", "os=debian")
    info = world.ok("image", "info", f"lab:{ALIAS}")
    assert f"Fingerprint: {world.fp}" in info and "Public: yes" in info
    assert world.fp in world.ok("image", "show", f"lab:{world.fp[:10]}")
    aliases = world.ok("image", "alias", "list", "lab:")
    assert ALIAS in aliases and world.fp[:12] in aliases
    assert "not found" in world.fails("image", "info", "lab:debian/12")
    assert "read-only" in world.fails("image", "delete", f"lab:{ALIAS}")


# -- launch and copy ---------------------------------------------------------------------------
def test_launch_from_a_simplestreams_remote_caches_the_image(world: World) -> None:
    ensure_lab(world)
    world.ok("launch", f"lab:{ALIAS}", "cl-c1")
    try:
        assert world.ok("exec", "cl-c1", "--", "echo", "hi") == "hi\n"
        image = world.images()[world.fp]
        assert image["cached"] is True
        assert image["aliases"] == []  # a cached image gets no local alias
        shown = yaml.safe_load(world.ok("image", "show", world.fp))
        assert shown["update_source"]["server"] == world.http.url
        assert shown["update_source"]["alias"] == ALIAS
    finally:
        world.mc("delete", "--force", "cl-c1")


def test_image_copy_with_alias_and_auto_update(world: World) -> None:
    ensure_lab(world)
    world.ok("image", "copy", f"lab:{ALIAS}", "local:", "--alias", "bb", "--auto-update")
    image = world.images()[world.fp]
    assert [a["name"] for a in image["aliases"]] == ["bb"]
    assert image["auto_update"] is True
    # an alias the target already has is refused before anything is copied
    assert 'Alias "bb" already exists on "local"' in world.fails(
        "image", "copy", f"lab:{ALIAS}", "local:", "--alias", "bb")
    assert "The target must be a remote" in world.fails(
        "image", "copy", f"lab:{ALIAS}", "local:x")
    assert "read-only" in world.fails("image", "copy", "bb", "lab:")


def test_refresh_and_edit(world: World) -> None:
    """bb comes from the copy test (an alias copy with --auto-update: it has a source)."""
    assert world.ok("image", "refresh", "bb") == "Image already up to date.\n"
    newer = gzip.compress(gzip.decompress(world.unified), mtime=1_700_000_000)
    new_fp = world.tree.add(newer, "2026-02-01T00:00:00Z")
    assert world.ok("image", "refresh", "bb") == "Image refreshed successfully!\n"
    images = world.images()
    assert [a["name"] for a in images[new_fp]["aliases"]] == ["bb"]
    res = world.daemon.mc("image", "edit", "bb",
                          input="public: true\nauto_update: false\nproperties:\n"
                                "  os: busybox\n  description: edited\n")
    assert res.code == 0, res.err
    shown = yaml.safe_load(world.ok("image", "show", "bb"))
    assert shown["public"] is True and shown["auto_update"] is False
    assert shown["properties"]["description"] == "edited"
    bad = world.daemon.mc("image", "edit", "bb", input="colour: blue\n")
    assert bad.code == 1 and bad.err.count("\n") == 1 and "editable:" in bad.err


def test_the_images_remote_can_be_repointed(world: World) -> None:
    world.ok("remote", "set-url", "images", f"http://127.0.0.1:{closed_port()}")
    err = world.fails("launch", f"images:{ALIAS}", "cl-c2")
    assert "127.0.0.1" in err
    world.ok("remote", "set-url", "images", world.http.url)
    world.ok("launch", f"images:{ALIAS}", "cl-c2")
    try:
        assert world.ok("exec", "cl-c2", "--", "true") == ""
    finally:
        world.mc("delete", "--force", "cl-c2")
    assert "doesn't exist" in world.fails("launch", "nowhere:x", "cl-c9")


def test_hex_only_aliases_are_followed_and_fingerprints_are_not(world: World,
                                                                   tmp_path: Path) -> None:
    """Aliases made of hex letters (`bead`, `deb12`) were sent to the daemon as fingerprints:
    a launch cached the image without its source alias (never auto-updated), and a copy by
    fingerprint with --auto-update claimed "Auto update: enabled" with nothing to follow."""
    ensure_bb(world)
    tree = Tree(tmp_path / "hex")
    fp = tree.add(gzip.compress(gzip.decompress(world.unified), mtime=1_600_000_000),
                  "2026-03-01T00:00:00Z", aliases=("bead",))
    with StreamServer(tree.root) as server:
        world.ok("remote", "add", "hexlab", server.url, "--protocol", "simplestreams")
        try:
            # the failed launch says nothing about starting; then a launch names its instance
            res = world.daemon.mc("launch", "hexlab:nothere", "ur-hex0", input="")
            assert res.code == 1 and res.out == "Creating ur-hex0\n", res.out
            out = world.ok("init", "hexlab:bead")
            assert out.startswith("Creating the instance\nInstance name is: c"), out
            picked = out.split("Instance name is: ", 1)[1].strip()
            world.ok("delete", picked)
            image = yaml.safe_load(world.ok("image", "show", fp))
            assert image["update_source"]["alias"] == "bead" and image["auto_update"] is True
            info = world.ok("image", "info", fp)
            assert f"Source:\n    Server: {server.url}\n    Protocol: simplestreams\n" \
                   "    Alias: bead\n" in info
            assert "Expires: never" in info and "1970" not in info
            world.ok("image", "delete", fp)

            before = set(world.images())
            err = world.fails("image", "copy", f"hexlab:{fp[:8]}", "local:", "--auto-update")
            assert f'"{fp[:8]}" is a fingerprint on "hexlab"' in err
            assert "copy it by alias (e.g. hexlab:" in err
            assert "needs an image from another remote" in world.fails(
                "image", "copy", "local:bb", "local:", "--auto-update")
            assert set(world.images()) == before  # refused before anything was fetched
            world.ok("image", "copy", "hexlab:bead", "local:", "--auto-update")
            assert world.images()[fp]["auto_update"] is True
            world.ok("image", "delete", fp)
        finally:
            world.ok("remote", "remove", "hexlab")


def test_remote_add_says_what_kind_of_server_answered(world: World) -> None:
    before = config_bytes(world)
    # a simplestreams https server added as a machined (the default protocol)
    err = world.fails("remote", "add", "x", world.https.url, "--accept-certificate")
    assert "is not a machined server (GET /1.0 answered HTTP 404)" in err
    assert "--protocol simplestreams" in err
    # https:// to a plain http server
    err = world.fails("remote", "add", "x", world.http.url.replace("http:", "https:"),
                      "--protocol", "simplestreams")
    assert "(is it a plain http:// server?)" in err
    assert config_bytes(world) == before
    assert not (world.conf / "servercerts" / "x.crt").exists()


def test_a_https_address_that_cannot_be_bound_is_not_kept(world: World) -> None:
    """The failed value was stored: `config get` showed an address nothing listened on and
    the next daemon start tried it again."""
    taken = world.http.url.rsplit(":", 1)[1]  # the stream server listens there
    err = world.fails("config", "set", "core.https_address", f"127.0.0.1:{taken}")
    assert f"Cannot listen on 127.0.0.1:{taken}" in err
    assert world.ok("config", "get", "core.https_address") == "\n"
    assert "core.https_address" not in world.ok("config", "show")


# -- https with a self-signed certificate ------------------------------------------------------
def test_https_remote_needs_its_certificate_accepted(world: World) -> None:
    err = world.fails("remote", "add", "secure", world.https.url, "--protocol",
                      "simplestreams")
    assert "--accept-certificate" in err and "not trusted" in err
    assert "secure" not in world.remotes()
    out = world.ok("remote", "add", "secure", world.https.url, "--protocol", "simplestreams",
                   "--accept-certificate")
    assert out.startswith("Certificate fingerprint: ")
    pinned = world.conf / "servercerts" / "secure.crt"
    assert pinned.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert list(world.images("secure:")) == [world.secure_fp]
    # the daemon gets the pinned certificate with the source and pulls over https
    world.ok("image", "copy", f"secure:{ALIAS}", "local:", "--alias", "sbb")
    target = yaml.safe_load(world.ok("image", "show", "sbb"))
    assert target["fingerprint"] == world.secure_fp
    assert target["update_source"]["certificate"] == pinned.read_text()


# -- another machined on this machine ----------------------------------------------------------
def test_copy_and_launch_between_two_daemons(world: World) -> None:
    ensure_bb(world)
    ensure_lab(world)
    with spawn_daemon() as other:
        world.ok("remote", "add", "lab2", f"unix://{other.socket}")
        assert world.remotes()["lab2"]["auth_type"] == "file access"
        # relayed through mc (a unix-socket source): same fingerprint on the other side
        world.ok("image", "copy", "local:bb", "lab2:", "--alias", "bb2")
        copied = world.images("lab2:")
        (fp,) = copied
        assert [a["name"] for a in copied[fp]["aliases"]] == ["bb2"]
        assert fp == yaml.safe_load(world.ok("image", "show", "bb"))["fingerprint"]
        # launch here from the other daemon's image; then there, from ours
        world.ok("launch", "lab2:bb2", "cl-c3")
        world.ok("launch", "local:bb", "lab2:cl-c4")
        try:
            assert world.ok("exec", "cl-c3", "--", "true") == ""
            assert world.ok("exec", "lab2:cl-c4", "--", "echo", "there") == "there\n"
            assert [i["name"] for i in json.loads(
                world.ok("list", "lab2:", "--format", "json"))] == ["cl-c4"]
            # with lab2 the default remote, plain names go there (exec's fast path too)
            world.ok("remote", "switch", "lab2")
            try:
                assert world.ok("exec", "cl-c4", "--", "echo", "default") == "default\n"
                assert "cl-c4" in world.ok("list")
                assert world.ok("exec", "local:cl-c3", "--", "echo", "here") == "here\n"
            finally:
                world.ok("remote", "switch", "local")
        finally:
            world.mc("delete", "--force", "cl-c3")
            world.mc("delete", "--force", "lab2:cl-c4")
        # --copy-aliases: the server's aliases of the image come along (lab2 pulls itself)
        world.ok("image", "copy", f"lab:{ALIAS}", "lab2:", "--copy-aliases")
        names = {a["name"]: a["target"] for a in json.loads(
            world.ok("image", "alias", "list", "lab2:", "--format", "json"))}
        served = world.images("lab:")
        newest = next(fp for fp, i in served.items()
                      if {"name": ALIAS, "description": ""} in i["aliases"])
        assert names[ALIAS] == newest and names["bb2"] == fp
        world.ok("remote", "remove", "lab2")


def test_https_machined_remote_with_a_trust_token(world: World) -> None:
    with spawn_daemon() as other:
        port = closed_port()
        other.ok("config", "set", "core.https_address", f"127.0.0.1:{port}")
        url = f"https://127.0.0.1:{port}"
        ensure_bb(world)
        before = config_bytes(world)
        assert "--accept-certificate" in world.fails("remote", "add", "far", url)
        err = world.fails("remote", "add", "far", url, "--accept-certificate")
        assert "does not trust this client" in err and "--token" in err
        assert config_bytes(world) == before
        assert not (world.conf / "servercerts" / "far.crt").exists()

        # read-only: public images only, no client certificate
        other.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
                 "--alias", "private-bb")
        world.ok("remote", "add", "farpub", url, "--accept-certificate", "--public")
        assert world.remotes()["farpub"]["public"] is True
        assert world.images("farpub:") == {}

        token = other.ok("config", "trust", "add", "cl-client").splitlines()[1]
        # mc -q prints the bare token, for TOKEN=$(mc -q config trust add NAME)
        quiet = other.ok("-q", "config", "trust", "add", "cl-quiet")
        assert quiet.count("\n") == 1 and quiet.startswith("eyJ")
        other.ok("config", "trust", "revoke-token", "cl-quiet")
        # URL + --token: the token vouches for the self-signed certificate (no question)
        out = world.ok("remote", "add", "far0", url, "--token", token)
        assert "now trusted" in out
        assert world.remotes()["far0"]["auth_type"] == "tls"
        world.ok("remote", "remove", "far0")
        # the token alone names the server; this client is trusted already: no second join
        world.ok("remote", "add", "far", token)
        far = world.remotes()["far"]
        assert far["addr"] == url and far["auth_type"] == "tls"
        assert (world.conf / "servercerts" / "far.crt").exists()
        (private,) = world.images("far:")  # trusted: private images too

        # relayed over https into the other daemon, then launched here
        world.ok("image", "copy", "local:bb", "far:", "--alias", "bbfar")
        assert "is private" in world.fails("launch", "far:bbfar", "cl-c6")
        res = world.daemon.mc("image", "edit", "far:bbfar", input="public: true\n")
        assert res.code == 0, res.err
        world.ok("launch", "far:bbfar", "cl-c6")
        assert "copy it first with `mc image copy local:bb far:`" in world.fails(
            "launch", "local:bb", "far:cl-c8")
        world.ok("launch", "far:bbfar", "far:cl-c7")
        try:
            assert world.ok("exec", "cl-c6", "--", "true") == ""
            assert world.ok("exec", "far:cl-c7", "--", "echo", "over", "tls") == "over tls\n"
            assert "Interactive exec on an https remote" in world.fails(
                "exec", "-t", "far:cl-c7", "--", "true")
        finally:
            world.mc("delete", "--force", "cl-c6")
            world.mc("delete", "--force", "far:cl-c7")
        world.ok("remote", "remove", "far")
        world.ok("remote", "remove", "farpub")
        assert not (world.conf / "servercerts" / "far.crt").exists()

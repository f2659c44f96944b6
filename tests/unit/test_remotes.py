"""mc's client configuration (remotes), `[remote:]name` with remotes, and the pure parts of
the remote image commands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from cli.commands.create import image_source
from cli.commands.image_remote import (
    copy_request,
    looks_like_fingerprint,
    no_alias_to_follow,
    parse_image_yaml,
    pull_source,
)
from cli.commands.remote import default_name, https_port_url, remote_rows
from cli.confdir import fast_split, scan_default_remote
from cli.context import Env
from cli.errors import CliError
from cli.params import parse_remote
from cli.progress import OperationProgress
from cli.remotes import (
    DEFAULTS,
    STATIC,
    ClientConfig,
    Remote,
    default_remote,
    dump_config,
    load_config,
    normalize_addr,
    parse_config,
    pin_certificate,
    save_config,
    with_remote,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "simplestreams"


@pytest.fixture
def conf_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "mc"
    monkeypatch.setenv("MC_CONF", str(directory))
    return directory


def write(conf_dir: Path, text: str) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "config.yml").write_text(text)


LAB = """\
default-remote: lab2
remotes:
  lab:
    addr: http://127.0.0.1:8000/
    protocol: simplestreams
  lab2:
    addr: 10.0.0.2
    auth_type: tls
  local:
    addr: https://elsewhere:8443
"""


# -- defaults, parsing -----------------------------------------------------------------------
def test_defaults_without_a_file(conf_dir: Path) -> None:
    conf = load_config()
    assert conf.default_remote == "local"
    assert list(conf.remotes) == ["local", "ubuntu", "ubuntu-daily", "images"]
    assert conf.get("local") == Remote("local", "unix://", "machined", static=True)
    assert conf.get("images").protocol == "simplestreams" and conf.get("images").public
    assert not conf.get("images").static
    assert {n for n, r in conf.remotes.items() if r.static} == {"local", "ubuntu",
                                                                 "ubuntu-daily"}
    assert default_remote() == "local"
    assert not conf_dir.exists()  # reading never writes


def test_a_file_defines_remotes(conf_dir: Path) -> None:
    write(conf_dir, LAB)
    conf = load_config()
    assert conf.default_remote == "lab2"
    assert conf.get("lab") == Remote("lab", "http://127.0.0.1:8000", "simplestreams",
                                     public=True)
    assert conf.get("lab2") == Remote("lab2", "https://10.0.0.2:8443", "machined",
                                      auth_type="tls")
    # static remotes keep their built-in values; `images` was removed by whoever wrote it
    assert conf.get("local") == STATIC["local"]
    assert "images" not in conf.remotes
    assert default_remote() == "lab2"


def test_unknown_remote() -> None:
    with pytest.raises(CliError, match='^The remote "nope" doesn\'t exist$'):
        ClientConfig(Path("/x")).get("nope")


@pytest.mark.parametrize(("text", "error"), [
    ("remotes: [a\n", r"config.yml: line 2: "),
    ("colour: blue\n", r"line 1: unknown key \"colour\" \(accepted: default-remote, remotes"),
    ("remotes:\n  lab:\n    addr: x\n    protocol: lxd\n",
     r'line 4: remote "lab": protocol "lxd" is not one of machined, simplestreams'),
    ("remotes:\n  lab:\n    protocol: machined\n", r'line 3: remote "lab" has no addr'),
    ("remotes:\n  lab:\n    addr: http://h\n",
     r"line 3: remote \"lab\": Invalid URL \"http://h\": http:// is only for simplestreams"),
    ("remotes:\n  lab:\n    addr: h\n    public: maybe\n",
     r'line 4: remote "lab": public must be true or false'),
    ("remotes:\n  a/b:\n    addr: h\n", r'line 2: invalid remote name "a/b"'),
    ("remotes:\n  lab:\n    addr: h\n    colour: red\n",
     r'line 4: remote "lab": unknown key "colour"'),
    ("default-remote: far\n", r'line 1: default-remote "far" is not one of the remotes'),
    ("- a\n- b\n", r"line 1: The configuration must be a mapping"),
    ("remotes: 3\n", r"line 1: remotes must be a mapping"),
    ("remotes:\n  lab:\n    addr: !!python/name:os.system\n",
     r"line 3: could not determine a constructor"),
    ("remotes:\n  lab:\n    addr: [a]\n", r"line 3: expected a single value"),
])
def test_errors_are_one_line_with_the_line_number(conf_dir: Path, text: str,
                                                   error: str) -> None:
    write(conf_dir, text)
    with pytest.raises(CliError) as info:
        load_config()
    message = info.value.message
    assert "\n" not in message
    assert message.startswith(f"{conf_dir}/config.yml")
    assert __import__("re").search(error, message), message


def test_empty_file_and_empty_remotes(tmp_path: Path) -> None:
    assert list(parse_config("", tmp_path).remotes) == list(DEFAULTS)
    conf = parse_config("remotes:\n", tmp_path)
    assert list(conf.remotes) == list(STATIC)


def test_lxc_config_aliases_are_kept(tmp_path: Path) -> None:
    conf = parse_config("aliases:\n  ll: list -c ns\nremotes: {}\n", tmp_path)
    assert conf.extra == {"aliases": {"ll": "list -c ns"}}
    assert yaml.safe_load(dump_config(conf))["aliases"] == {"ll": "list -c ns"}


@pytest.mark.parametrize(("addr", "protocol", "expected"), [
    ("unix://", "machined", "unix://"),
    ("unix:///run/m/unix.socket", "machined", "unix:///run/m/unix.socket"),
    ("/run/m/unix.socket", "machined", "unix:///run/m/unix.socket"),
    ("10.0.0.2", "machined", "https://10.0.0.2:8443"),
    ("lab.example:9443", "machined", "https://lab.example:9443"),
    ("https://lab.example/", "machined", "https://lab.example:8443"),
    ("https://[::1]:8443", "machined", "https://[::1]:8443"),
    ("https://images.example.org/", "simplestreams", "https://images.example.org"),
    ("http://127.0.0.1:8000/mirror/", "simplestreams", "http://127.0.0.1:8000/mirror"),
])
def test_normalize_addr(addr: str, protocol: str, expected: str) -> None:
    assert normalize_addr(addr, protocol) == expected


@pytest.mark.parametrize(("addr", "protocol", "error"), [
    ("http://lab:8443", "machined", "http:// is only for simplestreams remotes"),
    ("https://lab/some/path", "machined", "without a path"),
    ("unix://host/x", "machined", "use unix://"),
    ("ftp://x", "machined", "machined remotes use https://host"),
    ("unix://", "simplestreams", "need an https://"),
    ("https://x?a=b", "simplestreams", "no query"),
    ("https://x:99999", "machined", "Invalid URL"),
    ("x", "oci", 'Invalid protocol "oci"'),
    ("http://lab:8443", "machined", r"\(--protocol simplestreams\)"),
    # a pasted, damaged trust token is no host name (was a UnicodeError from the idna codec)
    ("eyJ" + "a" * 80, "machined", r'"eyj' + "a" * 80 + '" is not a host name'),
])
def test_bad_addresses(addr: str, protocol: str, error: str) -> None:
    with pytest.raises(CliError, match=error):
        normalize_addr(addr, protocol)


# -- saving ----------------------------------------------------------------------------------
def test_save_is_atomic_private_and_round_trips(conf_dir: Path) -> None:
    conf = load_config()
    conf = with_remote(conf, Remote("lab", "http://127.0.0.1:8000", "simplestreams", True))
    conf.default_remote = "lab"
    save_config(conf)
    path = conf_dir / "config.yml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf_dir.stat().st_mode) == 0o700
    assert [p.name for p in conf_dir.iterdir()] == ["config.yml"]  # no temp file left
    data = yaml.safe_load(path.read_text())
    assert data["default-remote"] == "lab"
    assert set(data["remotes"]) == {"images", "lab"}  # static remotes are never written
    again = load_config()
    assert again.remotes == conf.remotes and again.default_remote == "lab"
    assert default_remote() == "lab"


def test_a_failed_save_leaves_the_old_file(conf_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    write(conf_dir, LAB)

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        save_config(with_remote(load_config(), Remote("x", "https://x:8443")))
    assert (conf_dir / "config.yml").read_text() == LAB
    assert [p.name for p in conf_dir.iterdir()] == ["config.yml"]


def test_pinned_certificates(conf_dir: Path) -> None:
    conf = load_config()
    assert conf.pinned_pem("lab") == ""
    pin_certificate(conf, "lab", "-----BEGIN CERTIFICATE-----\nx\n")
    assert conf.pinned_pem("lab").startswith("-----BEGIN CERTIFICATE-----")
    assert conf.server_cert("lab") == conf_dir / "servercerts" / "lab.crt"


# -- the default remote without YAML ---------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("default-remote: lab\nremotes: {}\n", "lab"),
    ("{default-remote: lab}\n", None),  # flow style: YAML decides
    ("default-remote: lab\nremotes:\n  lab:\n    addr: x\n", "lab"),
    ("remotes:\n  lab:\n    addr: x\ndefault-remote: 'lab'\n", "lab"),
    ('default-remote: "local"\n', "local"),
    ("remotes:\n  lab:\n    addr: x\n", "local"),
    ("default-remote: a b\n", None),
    ("default-remote: lab\ndefault-remote: local\n", None),
    ("---\ndefault-remote: lab\n", None),
    ("  default-remote: lab\n", None),
])
def test_scan_default_remote(text: str, expected: str | None) -> None:
    assert scan_default_remote(text) == expected


def test_fast_split(conf_dir: Path) -> None:
    assert fast_split("c1") == ("local", "c1")
    assert fast_split("local:c1") == ("local", "c1")
    assert fast_split("c1/snap:0") == ("local", "c1/snap:0")
    assert fast_split("lab2:c1") is None  # another remote: the full reader decides
    write(conf_dir, LAB)
    assert fast_split("local:c1") == ("local", "c1")
    assert fast_split("c1") is None  # the default is not local


# -- [remote:]name with remotes ----------------------------------------------------------------
@pytest.mark.parametrize(("arg", "expected"), [
    ("c1", ("lab2", "c1")),
    ("lab:busybox/1.35", ("lab", "busybox/1.35")),
    ("local:c1", ("local", "c1")),
    ("lab:", ("lab", "")),
    ("c1/snap:0", ("lab2", "c1/snap:0")),
])
def test_parse_remote_with_remotes(arg: str, expected: tuple[str, str]) -> None:
    assert parse_remote(arg, ("local", "lab", "lab2"), "lab2") == expected


def test_env_split_reads_the_config(conf_dir: Path) -> None:
    write(conf_dir, LAB)
    env = Env()
    assert env.split("c1") == ("lab2", "c1")
    assert env.split("lab:busybox") == ("lab", "busybox")
    with pytest.raises(CliError, match='The remote "images" doesn\'t exist'):
        env.split("images:debian/12")
    with pytest.raises(CliError, match='Missing instance name in "lab2:"'):
        env.target("lab2:")
    with pytest.raises(CliError, match=r'"lab" is a simplestreams image server \(read-only\)'):
        env.client("lab")


def test_remote_list_rows(conf_dir: Path) -> None:
    write(conf_dir, LAB)
    rows, raw = remote_rows(load_config())
    assert rows[0] == ["lab", "http://127.0.0.1:8000", "simplestreams", "none", "YES", "NO"]
    assert rows[1] == ["lab2 (current)", "https://10.0.0.2:8443", "machined", "tls", "NO", "NO"]
    assert rows[2] == ["local", "unix://", "machined", "file access", "NO", "YES"]
    assert [r[0] for r in rows] == ["lab", "lab2 (current)", "local", "ubuntu", "ubuntu-daily"]
    assert raw["local"] == {"addr": "unix://", "protocol": "machined",
                            "auth_type": "file access", "public": False, "static": True}
    json.dumps(raw)


def test_default_names_and_probe_urls() -> None:
    assert default_name("https://lab.example:8443") == "lab.example"
    assert default_name("10.0.0.2") == "10.0.0.2"
    assert https_port_url("https://images.example.org/releases") == \
        "https://images.example.org:443"
    assert https_port_url("https://127.0.0.1:4443") == "https://127.0.0.1:4443"


# -- images across remotes ---------------------------------------------------------------------
def test_pull_sources(conf_dir: Path) -> None:
    write(conf_dir, LAB)
    conf = load_config()
    lab = conf.get("lab")
    assert pull_source(conf, lab, "busybox/1.35") == {
        "type": "image", "mode": "pull", "server": "http://127.0.0.1:8000",
        "protocol": "simplestreams", "certificate": "", "image_type": "container",
        "alias": "busybox/1.35"}
    pin_certificate(conf, "lab2", "PEM")
    source = pull_source(conf, conf.get("lab2"), "3dc7a4", by_fingerprint=True)
    assert source["fingerprint"] == "3dc7a4" and "alias" not in source
    assert source["protocol"] == "machined" and source["certificate"] == "PEM"
    assert copy_request(source, public=True, auto_update=False) == {
        "source": source, "public": True, "auto_update": False}
    assert looks_like_fingerprint("deadbeef") and not looks_like_fingerprint("22.04")
    assert not looks_like_fingerprint("debian/12") and not looks_like_fingerprint("")


@pytest.mark.parametrize("name", ["bb", "deb12", "cafe", "3dc7a4"])
def test_hex_looking_names_go_as_aliases(conf_dir: Path, name: str) -> None:
    """`mc launch images:deb12` sent `fingerprint: deb12`: the daemon then recorded no source
    alias, so the image was never auto-updated. The daemon tells alias from fingerprint."""
    write(conf_dir, LAB)
    conf = load_config()
    source = pull_source(conf, conf.get("lab"), name)
    assert source["alias"] == name and "fingerprint" not in source
    assert image_source(Env(), "lab", name, "local")["alias"] == name


def test_auto_update_refusal_names_an_alias_to_use() -> None:
    assert no_alias_to_follow("lab2", "17c3", ["p2"]) == (
        '--auto-update follows an alias, but "17c3" is a fingerprint on "lab2": copy it by '
        "alias (e.g. lab2:p2), or without --auto-update")
    assert "(e.g." not in no_alias_to_follow("images", "7ea1", [])


def test_a_config_file_that_is_not_text_is_one_clear_error(conf_dir: Path) -> None:
    conf_dir.mkdir(parents=True)
    (conf_dir / "config.yml").write_bytes(b"\x00\xff\xfe")
    with pytest.raises(CliError, match=r"config.yml: not UTF-8 text"):
        load_config()


def test_launch_sources(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.commands.create

    write(conf_dir, LAB + "  lab3:\n    addr: unix:///srv/m3/unix.socket\n")
    env = Env()
    assert image_source(env, "local", "busybox", "local") is None
    assert image_source(env, "lab", "busybox/1.35", "local")["server"] == \
        "http://127.0.0.1:8000"
    checked: list[tuple[str, ...]] = []
    monkeypatch.setattr(cli.commands.create, "_check_public",
                        lambda env, *args: checked.append(args))
    assert image_source(env, "lab2", "x", "local")["protocol"] == "machined"
    assert checked == [("lab2", "x", "local")]  # an https daemon serves public images only
    # another daemon on this machine: the target reads its socket
    assert image_source(env, "lab3", "x", "local")["server"] == "unix:///srv/m3/unix.socket"
    with pytest.raises(CliError, match=r"copy it first with `mc image copy lab3:x lab2:`"):
        image_source(env, "lab3", "x", "lab2")


def test_image_edit_documents() -> None:
    body = parse_image_yaml("public: true\nauto_update: false\nproperties:\n  os: Debian\n"
                            "  release: 12\nexpires_at: 2030-01-31T00:00:00Z\n")
    assert body == {"public": True, "auto_update": False,
                    "properties": {"os": "Debian", "release": "12"},
                    "expires_at": "2030-01-31T00:00:00Z"}
    assert parse_image_yaml("{}") == {"public": False, "auto_update": False,
                                      "properties": {}}
    with pytest.raises(CliError, match=r"Unknown image field colour \(editable: "):
        parse_image_yaml("colour: blue\n")
    # `mc image show` output round-trips: its read-only fields are ignored.
    assert parse_image_yaml("fingerprint: abc\nsize: 3\nprofiles: [default]\npublic: true\n"
                            "update_source: {server: x}\n")["public"] is True
    with pytest.raises(CliError, match="public must be true or false"):
        parse_image_yaml("public: sometimes\n")
    with pytest.raises(CliError, match="Invalid YAML at line 2"):
        parse_image_yaml("public: [\n")


def test_download_progress_line() -> None:
    progress = OperationProgress(enabled=False)
    assert progress.text({"metadata": {"download_progress": "rootfs: 45% (12.3 MB/s)"}}) == \
        "Retrieving image: rootfs: 45% (12.3 MB/s)"
    assert progress.text({"metadata": {}}) == ""


def test_stream_images_look_like_api_images() -> None:
    from cli.streams import image_json
    from machined.images.simplestreams import Catalog, parse_products

    products = json.loads((FIXTURES / "products-lxd-container-debian-2020.json").read_text())
    catalog = Catalog(parse_products(products), "x86_64")
    image = image_json(catalog.resolve("debian/buster"))
    assert image["fingerprint"].startswith("deae1eba")
    assert image["public"] is True and image["type"] == "container"
    assert {"name": "debian/buster", "description": ""} in image["aliases"]
    assert image["architecture"] == "x86_64"
    assert image["uploaded_at"] == image["created_at"]


def test_waiting_with_progress_polls_until_done(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from cli.client import Client
    from cli.progress import wait_with_progress

    ops = [{"status_code": 103, "metadata": {}},
           {"status_code": 103, "metadata": {"download_progress": "image: 10% (1.0 MB/s)"}},
           {"status_code": 103, "metadata": {"download_progress": "image: 60% (2.0 MB/s)"}},
           {"status_code": 200, "metadata": {"fingerprint": "ab"}}]
    asked: list[str] = []

    def get(self: Client, path: str) -> dict:
        asked.append(path)
        return ops.pop(0)

    monkeypatch.setattr(Client, "get", get)
    monkeypatch.setattr(OperationProgress, "__init__", _tty_progress)
    done = wait_with_progress(Client(path="/nonexistent"), {"id": "op1"})
    assert done["metadata"] == {"fingerprint": "ab"}
    assert asked == ["/1.0/operations/op1/wait?timeout=0.5"] * 4
    err = capsys.readouterr().err
    assert "\r\033[KRetrieving image: image: 10% (1.0 MB/s)" in err
    assert "Retrieving image: image: 60% (2.0 MB/s)" in err
    assert err.endswith("\r\033[K")  # the line is cleared at the end


def _tty_progress(self: OperationProgress, label: str = "Retrieving image",
                  key: str = "download_progress", enabled: bool | None = None) -> None:
    self.label, self.key, self.enabled, self.shown = label, key, enabled is not False, ""


def test_a_failed_operation_still_raises_after_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.client import Client

    ops = [{"status_code": 103, "metadata": {}},
           {"status_code": 400, "err": "Could not reach http://127.0.0.1:1: refused"}]
    monkeypatch.setattr(Client, "get", lambda self, path: ops.pop(0))
    with pytest.raises(CliError, match="^Could not reach http://127.0.0.1:1: refused$"):
        Client(path="/nonexistent").wait_operation("/1.0/operations/x", on_progress=print)

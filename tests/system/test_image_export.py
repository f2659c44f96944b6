"""GET /1.0/images/<fp>/export and `mc image export` against a real daemon: the bytes that
come out are the bytes that went in, for unified and split images."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.client import Client
from cli.errors import ApiError
from tests.conftest import built_image

pytestmark = pytest.mark.system


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def api(daemon):
    client = Client(os.fspath(daemon.socket))
    yield client
    client.close()


@pytest.fixture(scope="module")
def unified(daemon, busybox_image) -> tuple[str, Path]:
    (path,) = built_image("busybox", "unified")
    return sha(path), path


@pytest.fixture(scope="module")
def split(daemon) -> tuple[str, Path, Path]:
    meta, rootfs = built_image("busybox", "split")
    fp = hashlib.sha256(meta.read_bytes() + rootfs.read_bytes()).hexdigest()
    if daemon.mc("image", "info", fp).code != 0:
        daemon.ok("image", "import", os.fspath(meta), os.fspath(rootfs), "--alias", "ss-split")
    return fp, meta, rootfs


def multipart_parts(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """(name, filename, bytes) per part, parsed by the stdlib (independent of mc's parser)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_payload(decode=True)) for part in message.iter_parts()]


def test_unified_export_is_the_imported_file(api, unified):
    fp, path = unified
    resp = api.raw("GET", f"/1.0/images/{fp}/export")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["x-lxd-fingerprint"] == fp
    assert resp.headers["content-disposition"] == f'attachment; filename="{fp}.tar.gz"'
    assert int(resp.headers["content-length"]) == path.stat().st_size
    assert resp.body == path.read_bytes()


def test_split_export_is_multipart_with_both_files(api, split):
    fp, meta, rootfs = split
    resp = api.raw("GET", f"/1.0/images/{fp[:10]}/export")  # a unique prefix will do
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert resp.headers["x-lxd-fingerprint"] == fp
    parts = multipart_parts(resp.headers["content-type"], resp.body)
    rootfs_ext = ".squashfs" if rootfs.read_bytes()[:4] == b"hsqs" else ".tar.xz"
    assert [(n, f) for n, f, _ in parts] == [("metadata", f"meta-{fp}.tar.xz"),
                                             ("rootfs", f"{fp}{rootfs_ext}")]
    assert parts[0][2] == meta.read_bytes() and parts[1][2] == rootfs.read_bytes()
    assert hashlib.sha256(parts[0][2] + parts[1][2]).hexdigest() == fp


@pytest.mark.parametrize("name, status, message", [
    ("0" * 64, 404, "not found"),
    ("not-hex", 404, "not found"),
])
def test_export_of_unknown_image(api, unified, name, status, message):
    with pytest.raises(ApiError, match=message) as err:
        api.get(f"/1.0/images/{name}/export")
    assert err.value.status == status


def test_split_export_has_a_content_length(api, split):
    """mc streams only bodies whose length is known."""
    fp, meta, rootfs = split
    resp = api.raw("GET", f"/1.0/images/{fp}/export")
    assert int(resp.headers["content-length"]) == len(resp.body)


def test_mc_export_unified_into_a_directory(daemon, unified, tmp_path):
    fp, path = unified
    daemon.ok("image", "export", "busybox", os.fspath(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == [f"{fp}.tar.gz"]
    assert (tmp_path / f"{fp}.tar.gz").read_bytes() == path.read_bytes()


def test_mc_export_unified_to_a_file_name_gets_the_extension(daemon, unified, tmp_path):
    fp, path = unified
    out = daemon.ok("image", "export", f"local:{fp[:12]}", os.fspath(tmp_path / "bb"))
    assert "Image exported successfully!" in out
    assert [p.name for p in tmp_path.iterdir()] == ["bb.tar.gz"]
    assert (tmp_path / "bb.tar.gz").read_bytes() == path.read_bytes()


def test_mc_export_split_into_the_current_directory(daemon, split, tmp_path):
    fp, meta, rootfs = split
    res = subprocess.run([daemon.mc_path, "image", "export", "ss-split"], cwd=tmp_path,
                         env=daemon.env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rootfs_ext = ".squashfs" if rootfs.read_bytes()[:4] == b"hsqs" else ".tar.xz"
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted([f"meta-{fp}.tar.xz", f"{fp}{rootfs_ext}"])
    assert (tmp_path / f"meta-{fp}.tar.xz").read_bytes() == meta.read_bytes()
    assert (tmp_path / f"{fp}{rootfs_ext}").read_bytes() == rootfs.read_bytes()


def test_mc_export_split_to_a_file_name(daemon, split, tmp_path):
    fp, meta, rootfs = split
    (tmp_path / "img").write_bytes(b"old contents, replaced as LXD does")
    daemon.ok("image", "export", "ss-split", os.fspath(tmp_path / "img"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "img.root"]
    assert (tmp_path / "img").read_bytes() == meta.read_bytes()
    assert (tmp_path / "img.root").read_bytes() == rootfs.read_bytes()


def test_mc_export_errors_leave_nothing(daemon, unified, tmp_path):
    res = daemon.mc("image", "export", "no-such-image", os.fspath(tmp_path))
    assert res.code == 1 and 'Image "no-such-image" not found' in res.err
    res = daemon.mc("image", "export", "busybox", os.fspath(tmp_path / "missing" / "x"))
    assert res.code == 1 and "does not exist" in res.err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def https_url(daemon):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon.ok("config", "set", "core.https_address", f"127.0.0.1:{port}")
    yield f"https://127.0.0.1:{port}"
    daemon.ok("config", "unset", "core.https_address")


def untrusted_get(url: str) -> tuple[int, bytes]:
    """No client certificate: an untrusted caller."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_untrusted_callers_export_public_images_only(api, unified, https_url):
    fp, path = unified
    api.patch(f"/1.0/images/{fp}", {"public": False})
    for name in (fp, fp[:8]):
        status, body = untrusted_get(f"{https_url}/1.0/images/{name}/export")
        assert status == 404 and json.loads(body)["error"] == f"Image {name!r} not found"
    api.patch(f"/1.0/images/{fp}", {"public": True})
    try:
        assert untrusted_get(f"{https_url}/1.0/images/{fp[:8]}/export") == \
            (200, path.read_bytes())
    finally:
        api.patch(f"/1.0/images/{fp}", {"public": False})


def test_head_sends_headers_only(api, unified):
    fp, path = unified
    resp = api.raw("HEAD", f"/1.0/images/{fp}/export")
    assert resp.status == 200 and resp.body == b""
    assert int(resp.headers["content-length"]) == path.stat().st_size
    assert api.get("/1.0")["api_version"] == "1.0"  # the connection is still in step

"""The pure rules of the files API (machined/files/model.py)."""

from __future__ import annotations

import io
import tarfile

import pytest

from machined.errors import BadRequest
from machined.files import model
from machined.files.model import Perms, PushHeaders


def headers(**values: str):
    return model.parse_push_headers(lambda field: values.get(field.replace("-", "_")))


@pytest.mark.parametrize("raw, path", [
    ("etc/hosts", "/etc/hosts"),
    ("/etc//hosts/", "/etc/hosts"),
    ("//etc/./hosts", "/etc/hosts"),
    ("/../../etc/hosts", "/etc/hosts"),
    ("/tmp/a/../b", "/tmp/b"),
    ("/", "/"),
    ("..", "/"),
])
def test_normalize_path(raw, path):
    assert model.normalize_path(raw) == path


@pytest.mark.parametrize("raw, message", [
    (None, "Missing path argument"),
    ("", "Missing path argument"),
    ("/a\0b", "The path contains a NUL byte"),
    ("/" + "a" * 5000, "The path is longer than 4096 bytes"),
])
def test_normalize_path_refuses(raw, message):
    with pytest.raises(BadRequest) as e:
        model.normalize_path(raw)
    assert e.value.message == message


def test_headers_defaults():
    assert headers() == PushHeaders(None, None, None, "file", "overwrite", frozenset())


def test_headers_full():
    h = headers(uid="1000", gid="0", mode="0640", type="directory", write="append",
                modify_perm="uid, mode")
    assert h == PushHeaders(1000, 0, 0o640, "directory", "append", frozenset({"uid", "mode"}))


@pytest.mark.parametrize("raw, mode", [
    ("0644", 0o644), ("420", 0o644), ("0o755", 0o755), ("04755", 0o4755), ("0", 0),
    ("-1", None), ("", None), (" 0600 ", 0o600),
])
def test_mode_parsing(raw, mode):
    assert model.parse_mode(raw) == mode


@pytest.mark.parametrize("raw", ["0999", "rwx", "0x1ff", "010000", "-5", "1.5"])
def test_mode_refused(raw):
    with pytest.raises(BadRequest) as e:
        model.parse_mode(raw)
    assert e.value.message.startswith(f"Invalid X-LXD-mode {raw!r}")


@pytest.mark.parametrize("raw, value", [("0", 0), ("1000", 1000), ("-1", None), (None, None),
                                        ("4294967294", 4294967294)])
def test_id_parsing(raw, value):
    assert model.parse_id("uid", raw) == value


@pytest.mark.parametrize("raw", ["abc", "1e3", "-2", "4294967295", "0x10"])
def test_id_refused(raw):
    with pytest.raises(BadRequest) as e:
        model.parse_id("gid", raw)
    assert e.value.message.startswith(f"Invalid X-LXD-gid {raw!r}")


@pytest.mark.parametrize("values, message", [
    ({"type": "fifo"}, "Invalid X-LXD-type 'fifo': accepted are file, directory, symlink"),
    ({"write": "truncate"}, "Invalid X-LXD-write 'truncate': accepted are overwrite, append"),
    ({"modify_perm": "uid,owner"},
     "Invalid X-LXD-modify-perm entry 'owner': accepted are uid, gid, mode"),
])
def test_header_values_refused(values, message):
    with pytest.raises(BadRequest) as e:
        headers(**values)
    assert e.value.message == message


def test_check_ids():
    ranges = [(0, 65536)]
    model.check_ids(PushHeaders(uid=65535, gid=0), ranges, ranges)
    model.check_ids(PushHeaders(), [], [])
    with pytest.raises(BadRequest) as e:
        model.check_ids(PushHeaders(gid=65536), ranges, ranges)
    assert e.value.message == ("X-LXD-gid 65536 is outside the ids the instance maps "
                               "(accepted: 0-65535)")


def test_permissions_for_new_existing_and_replaced_files():
    h = PushHeaders(uid=5, gid=None, mode=0o600, modify=frozenset({"mode"}))
    assert model.new_perms(h, 0o644) == Perms(5, 0, 0o600)
    assert model.new_perms(PushHeaders(), 0o750) == Perms(0, 0, 0o750)
    assert model.changed_perms(h) == Perms(-1, -1, 0o600)
    assert model.changed_perms(PushHeaders(uid=5)) == Perms(-1, -1, -1)
    assert model.replaced_perms(h, 1000, 1001, 0o644) == Perms(1000, 1001, 0o600)
    assert model.replaced_perms(PushHeaders(uid=7, modify=frozenset({"uid"})), 1, 2, 0o640) \
        == Perms(7, 2, 0o640)


def test_entry_headers():
    assert model.entry_headers("file", 1, 2, 0o4755, 0.0) == {
        "X-LXD-uid": "1", "X-LXD-gid": "2", "X-LXD-mode": "4755", "X-LXD-type": "file",
        "X-LXD-modified": "1970-01-01 00:00:00 +0000 UTC"}


@pytest.mark.parametrize("name, parts", [
    ("a", ("a",)), ("./a/b", ("a", "b")), ("a//b/", ("a", "b")),
])
def test_archive_names(name, parts):
    assert model.archive_parts(name) == parts


@pytest.mark.parametrize("name, message", [
    ("/etc/passwd", "has an absolute name"),
    ("a/../../x", "contains '..'"),
    ("..", "contains '..'"),
    (".", "names the target directory itself"),
    ("a\0b", "contains a NUL byte"),
    ("a/" * 2048 + "b", "is longer than 4096 bytes"),  # also keeps under_link() cheap
])
def test_archive_names_refused(name, message):
    with pytest.raises(BadRequest) as e:
        model.archive_parts(name)
    assert message in e.value.message


def test_members_below_archive_links():
    links = {("a", "link")}
    assert model.under_link(("a", "link", "x"), links)
    assert not model.under_link(("a", "link"), links)  # replacing the link itself is fine
    assert not model.under_link(("a", "linkx", "y"), links)


# -- tar headers: tarfile reads extended headers and sparse maps whole into memory ----------
def _tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=fmt) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _read(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|", tarinfo=model.ArchiveInfo) as tar:
        return [info.name for info in tar]


def _info(name: str, **pax: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.pax_headers = dict(pax)
    return info


def test_archive_headers_of_ordinary_size_are_read():
    long = "d/" * 200 + "f"
    assert _read(_tar((_info(long, comment="x" * 1000), b"data"))) == [long]
    assert _read(_tar((_info(long), b"data"), fmt=tarfile.GNU_FORMAT)) == [long]


@pytest.mark.parametrize("data", [
    _tar((_info("f", comment="x" * (2 << 20)), b"")),  # pax header
    _tar((_info("f" * (2 << 20)), b""), fmt=tarfile.GNU_FORMAT),  # GNU long name
], ids=["pax", "gnu-longname"])
def test_big_archive_headers_are_refused_before_they_are_read(data):
    with pytest.raises(BadRequest) as e:
        _read(data)
    assert e.value.message.startswith("The archive has an extended header (pax or GNU long "
                                      "name) of 2097")
    assert e.value.message.endswith("bytes: at most 1048576 are accepted")


def _old_gnu_sparse() -> bytes:
    info = tarfile.TarInfo("s")
    info.type = tarfile.GNUTYPE_SPARSE
    return info.tobuf(tarfile.GNU_FORMAT) + bytes(1024)


def _pax_sparse_1_0() -> bytes:
    info = _info("GNUSparseFile.0/s", **{"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                                          "GNU.sparse.name": "s",
                                          "GNU.sparse.realsize": "10"})
    return _tar((info, b"1\n0\n10\n".ljust(512, b"\0") + b"x" * 10))


def _pax_sparse_0_1() -> bytes:
    info = _info("s", **{"GNU.sparse.map": "0,10", "GNU.sparse.size": "10"})
    return _tar((info, b"x" * 10))


@pytest.mark.parametrize("data", [_old_gnu_sparse(), _pax_sparse_1_0(), _pax_sparse_0_1()],
                         ids=["old-gnu", "pax-1.0", "pax-0.1"])
def test_sparse_members_are_refused(data):
    """Sparse maps can be as long as the stream (old GNU extension blocks, pax 1.0 maps)."""
    with pytest.raises(BadRequest) as e:
        _read(data)
    assert e.value.message == ("Archive member 's' is a sparse file, which is not accepted "
                               "(only files, directories and symlinks)")

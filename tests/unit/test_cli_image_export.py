"""Pure parts of `mc image export` and `mc simplestreams`: where files go, what they are called,
and the server-supplied names that are never trusted as paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.commands.image_export import Part, _destinations, safe_filename
from cli.commands.simplestreams import _tree_name
from cli.errors import CliError

FP = "ab" * 32


@pytest.mark.parametrize("name, ok", [
    (f"{FP}.tar.gz", True), (f"meta-{FP}.tar.xz", True), ("x.squashfs", True),
    ("../etc/passwd", False), ("/etc/passwd", False), ("a/b", False), (".hidden", False),
    ("", False), ("a..b", False), ("a b", False), ("a\x00b", False), ("x" * 300, False),
])
def test_safe_filename(name, ok):
    assert safe_filename(name) == (name if ok else "")


def parts(*specs: tuple[str, str]) -> list[Part]:
    return [Part(role, filename, Path("/tmp/x")) for role, filename in specs]


def test_into_a_directory_under_the_server_names(tmp_path):
    unified = parts(("unified", f"{FP}.tar.gz"))
    assert _destinations(FP, unified, str(tmp_path)) == (tmp_path, [tmp_path / f"{FP}.tar.gz"])
    split = parts(("meta", f"meta-{FP}.tar.xz"), ("rootfs", f"{FP}.squashfs"))
    assert _destinations(FP, split, str(tmp_path))[1] == \
        [tmp_path / f"meta-{FP}.tar.xz", tmp_path / f"{FP}.squashfs"]
    # an unusable server name falls back to the fingerprint (LXD's temporary names)
    nameless = parts(("meta", ""), ("rootfs", ""))
    assert _destinations(FP, nameless, str(tmp_path))[1] == \
        [tmp_path / FP, tmp_path / f"{FP}.root"]


def test_to_a_file_name(tmp_path):
    target = str(tmp_path / "img")
    assert _destinations(FP, parts(("unified", f"{FP}.tar.gz")), target)[1] == \
        [tmp_path / "img.tar.gz"]
    assert _destinations(FP, parts(("unified", "")), target)[1] == [tmp_path / "img"]
    split = parts(("meta", f"meta-{FP}.tar.xz"), ("rootfs", f"{FP}.squashfs"))
    assert _destinations(FP, split, target)[1] == [tmp_path / "img", tmp_path / "img.root"]


def test_to_a_missing_directory(tmp_path):
    with pytest.raises(CliError, match="does not exist"):
        _destinations(FP, parts(("unified", "")), str(tmp_path / "no" / "img"))


@pytest.mark.parametrize("role, served, expected", [
    ("unified", f"{FP}.tar.gz", ("lxd_combined.tar.gz", "lxd_combined.tar.gz")),
    ("unified", f"{FP}.tar.xz", ("lxd_combined.tar.xz", "lxd_combined.tar.gz")),
    ("unified", "", ("lxd_combined.tar.gz", "lxd_combined.tar.gz")),
    ("meta", f"meta-{FP}.tar.xz", ("lxd.tar.xz", "lxd.tar.xz")),
    ("meta", f"meta-{FP}.tar.gz", ("lxd.tar.gz", "lxd.tar.xz")),
    ("rootfs", f"{FP}.squashfs", ("rootfs.squashfs", "squashfs")),
    ("rootfs", f"{FP}.tar.xz", ("rootfs.tar.xz", "root.tar.xz")),
    ("rootfs", f"{FP}.tar.zst", ("rootfs.tar.zst", "root.tar.xz")),
])
def test_tree_names(role, served, expected):
    assert _tree_name(role, served, "img") == expected


def test_tree_name_of_an_unknown_rootfs():
    with pytest.raises(CliError, match="Cannot tell the rootfs format of 'img'"):
        _tree_name("rootfs", f"{FP}.bin", "img")

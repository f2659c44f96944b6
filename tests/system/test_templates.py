"""Writing into a hostile rootfs: links and `..` resolve inside it, never on the host."""

from __future__ import annotations

import os

import pytest

from machined.runtime import rootfs as inroot

pytestmark = pytest.mark.system


@pytest.fixture
def tree(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (chown)")
    root = tmp_path / "rootfs"
    outside = tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim").write_text("host file\n")
    return root, outside


def test_plain_write_is_atomic_and_owned(tree):
    root, _ = tree
    assert inroot.write_file(os.fspath(root), "/etc/hosts", b"x\n", mode=0o640, uid=5, gid=6)
    st = os.stat(root / "etc/hosts")
    assert (root / "etc/hosts").read_bytes() == b"x\n"
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 5, 6)
    assert [p.name for p in (root / "etc").iterdir()] == ["hosts"]


def test_symlinked_target_is_replaced_not_followed(tree):
    root, outside = tree
    (root / "etc/hosts").symlink_to(outside / "victim")
    inroot.write_file(os.fspath(root), "/etc/hosts", b"mine\n")
    assert (outside / "victim").read_text() == "host file\n"
    assert not (root / "etc/hosts").is_symlink()


@pytest.mark.parametrize("link", ["/", "..", "../../..", "OUTSIDE"])
def test_symlinked_or_dotdot_parents_stay_inside(tree, link):
    root, outside = tree
    target = os.fspath(outside) if link == "OUTSIDE" else link
    (root / "evil").symlink_to(target)
    try:
        inroot.write_file(os.fspath(root), "/evil/victim", b"pwned\n")
    except FileNotFoundError:
        pass  # resolved inside the rootfs, where that directory does not exist
    assert (outside / "victim").read_text() == "host file\n"
    inroot.write_file(os.fspath(root), "/../../etc/dotdot", b"in\n")
    assert (root / "etc/dotdot").read_bytes() == b"in\n"


def test_only_if_missing(tree):
    root, _ = tree
    (root / "etc/hostname").write_text("keep\n")
    assert not inroot.write_file(os.fspath(root), "/etc/hostname", b"x", only_if_missing=True)
    assert (root / "etc/hostname").read_text() == "keep\n"

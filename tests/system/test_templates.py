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


def _volume(tmp_path, template: str):
    volume = tmp_path / "vol"
    (volume / "rootfs/etc").mkdir(parents=True)
    (volume / "templates").mkdir()
    (volume / "templates/t.tpl").write_text(template)
    (volume / "metadata.yaml").write_text(
        "architecture: x86_64\ncreation_date: 1\ntemplates:\n"
        "  /etc/out:\n    when: [create]\n    template: t.tpl\n")
    return volume


def test_templates_render_in_a_limited_child(tmp_path):
    from machined.instances import templates

    volume = _volume(tmp_path, "{{ instance.name }} {{ config_get('user.a', 'x') }}\n")
    assert templates.apply(volume, "create", "c9", "x86_64", {"user.a": "A"}, {}) == ["/etc/out"]
    assert (volume / "rootfs/etc/out").read_text() == "c9 A\n"


@pytest.mark.parametrize("template", [
    "{{ 9**(9**10) }}",  # folded while compiling: pure CPU in C, holds the GIL
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
])
def test_hostile_templates_are_stopped_not_waited_for(tmp_path, template):
    import time

    from machined.errors import BadRequest
    from machined.instances import templates

    volume = _volume(tmp_path, template)
    started = time.monotonic()
    with pytest.raises(BadRequest, match="stopped"):
        templates.apply(volume, "create", "c9", "x86_64", {}, {})
    assert time.monotonic() - started < templates.RENDER_TIMEOUT + 5
    assert not (volume / "rootfs/etc/out").exists()


def test_read_link_resolves_parents_inside_the_rootfs(tree):
    root, outside = tree
    (outside / "init").symlink_to("/host/secret/init")
    (root / "sbin").symlink_to(os.fspath(outside))  # absolute: means <rootfs><outside> inside
    assert inroot.read_link(os.fspath(root), "/sbin/init") is None
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/init").symlink_to("../lib/systemd/systemd")
    assert inroot.read_link(os.fspath(root), "/usr/sbin/init") == "../lib/systemd/systemd"
    assert inroot.read_link(os.fspath(root), "/usr/sbin") is None  # a directory, not a link

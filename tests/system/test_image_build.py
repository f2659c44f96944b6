"""Build images/busybox.yaml in both formats (cached between runs under
/var/cache/machined-test/) and unpack what was built."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from machined.images import build, format
from machined.images.unpack import unpack_split, unpack_unified

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, dpkg-deb)")]

RECIPES = Path(__file__).resolve().parents[2] / "images"
OUT = Path("/var/cache/machined-test/busybox")


@pytest.mark.parametrize("fmt", ["unified", "split"])
def test_build_busybox(fmt: str, tmp_path: Path) -> None:
    messages: list[str] = []
    first = build.build_image(RECIPES / "busybox.yaml", OUT, fmt=fmt,
                              cache_dir=OUT.parent / "cache", progress=messages.append)
    started = time.monotonic()
    again = build.build_image(RECIPES / "busybox.yaml", OUT, fmt=fmt,
                              cache_dir=OUT.parent / "cache")
    assert again.cached and time.monotonic() - started < 1
    assert (again.paths, again.fingerprint, again.metadata) == (
        first.paths, first.fingerprint, first.metadata)

    if fmt == "unified":
        (tarball,) = first.paths
        assert tarball.name == "busybox.tar.gz"
        assert format.fingerprint_file(tarball) == first.fingerprint
        unpack_unified(tarball, tmp_path / "vol")
    else:
        meta, squash = first.paths
        assert (meta.name, squash.name) == ("busybox.meta.tar.xz", "busybox.squashfs")
        assert format.detect_file(squash) is format.ArchiveKind.SQUASHFS
        assert format.fingerprint_split(meta, squash) == first.fingerprint
        unpack_split(meta, squash, tmp_path / "vol")

    vol = tmp_path / "vol"
    metadata = format.load_metadata(vol / "metadata.yaml")
    assert metadata.architecture == format.host_arch()
    assert metadata.properties["os"] == "busybox"
    assert {"os", "release", "variant", "architecture", "description"} <= set(
        metadata.properties)
    for path in ("/etc/hostname", "/etc/hosts"):
        rule = metadata.templates[path]
        assert rule.when == ("create", "copy")
        assert (vol / "templates" / rule.template).is_file()
    root = vol / "rootfs"
    assert os.readlink(root / "sbin/init") == "/bin/busybox"
    assert (root / "bin/busybox").stat().st_size > 500_000
    for applet in ("sh", "ls", "id", "stty", "cat", "echo", "sleep", "ps", "hostname",
                   "poweroff"):
        assert os.readlink(root / "bin" / applet) == "busybox"
    assert "::sysinit:/etc/init.d/rcS" in (root / "etc/inittab").read_text()
    assert "respawn" in (root / "etc/inittab").read_text()
    assert os.access(root / "etc/init.d/rcS", os.X_OK)
    assert (root / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (root / "etc/hostname").read_text() == ""
    assert not list(root.glob(".machined-action*"))


def test_recipe_change_rebuilds(tmp_path: Path) -> None:
    recipe = tmp_path / "busybox.yaml"
    recipe.write_text((RECIPES / "busybox.yaml").read_text()
                      + "\n  - generator: dump\n    path: /etc/motd\n    content: hi\n")
    out = tmp_path / "out"
    built = build.build_image(recipe, out)  # default cache_dir: out/cache
    assert not built.cached
    assert build.build_image(recipe, out).cached
    recipe.write_text(recipe.read_text().replace("content: hi", "content: hello"))
    rebuilt = build.build_image(recipe, out)
    assert not rebuilt.cached and rebuilt.fingerprint != built.fingerprint
    assert sorted(p.name for p in out.iterdir()) == [
        ".busybox.lock", "busybox.tar.gz", "busybox.unified.build.json", "cache"]


def test_recipe_errors(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("image: {distribution: x, release: 1, description: d}\n"
                      "source: {downloader: wget}\n")
    with pytest.raises(build.RecipeError, match="debootstrap or debian-package"):
        build.build_image(recipe, tmp_path / "out")
    with pytest.raises(build.RecipeError, match="unified, split"):
        build.build_image(RECIPES / "busybox.yaml", tmp_path / "out", fmt="zip")
    recipe.write_text("image: {distribution: x, release: 1, description: d}\n"
                      "source: {downloader: debian-package}\n"
                      "files: [{generator: dump, path: ../etc/x}]\n")
    with pytest.raises(build.RecipeError, match="absolute"):
        build.load_recipe(recipe)


def test_cli_prints_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main([str(RECIPES / "busybox.yaml"), str(OUT), "--format", "split",
                       "--cache-dir", str(OUT.parent / "cache")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [str(OUT / "busybox.meta.tar.xz"), str(OUT / "busybox.squashfs")]
    assert out[2].startswith("fingerprint: ")

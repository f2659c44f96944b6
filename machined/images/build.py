"""Build LXD-format images from distrobuilder-like recipes (images/*.yaml).

Recipe keys:
  image:    distribution, release, variant, description, architecture (kernel or Debian name;
            default: this machine)
  source:   downloader: debootstrap (url, suite, variant) | debian-package (host apt)
  packages: debootstrap --include list, or the .deb packages to extract
  actions:  [{trigger: post-unpack|post-files, action: script}] run in `chroot rootfs`
  files:    [{generator: dump|remove|hostname|hosts, path, content, mode, when}]

Steps: source -> post-unpack actions -> files -> post-files actions -> metadata.yaml ->
pack (unified <name>.tar.gz, or split <name>.meta.tar.xz + <name>.squashfs). A stamp
<name>.<fmt>.build.json beside the output records the recipe hash; a rebuild of the same
recipe bytes and format returns the existing files. Nothing is mounted in the host
namespace: debootstrap (which mounts /proc in its target) runs under `unshare --mount`.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machined.images.format import (
    ImageFormatError,
    ImageMetadata,
    TemplateRule,
    debian_arch,
    fingerprint_file,
    fingerprint_split,
    host_arch,
    kernel_arch,
    load_yaml,
    parse_metadata,
    parse_mode,
)
from machined.sys.run import run

FORMATS = ("unified", "split")
TRIGGERS = ("post-unpack", "post-files")
GENERATORS = ("dump", "remove", "hostname", "hosts")
_STAMP_VERSION = 1
_CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
               "SHELL": "/bin/sh", "DEBIAN_FRONTEND": "noninteractive"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

HOSTNAME_TPL = "{{ instance.name }}\n"
HOSTS_TPL = """127.0.0.1   localhost
127.0.1.1   {{ instance.name }}

# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
"""
_GENERATED = {"hostname": ("hostname.tpl", HOSTNAME_TPL), "hosts": ("hosts.tpl", HOSTS_TPL)}

Progress = Callable[[str], None]


class RecipeError(ValueError):
    """A recipe is invalid; the message is one sentence."""


@dataclass(frozen=True)
class FileSpec:
    generator: str
    path: str
    content: str = ""
    mode: int | None = None
    when: tuple[str, ...] = ("create", "copy")


@dataclass(frozen=True)
class Recipe:
    name: str
    distribution: str
    release: str
    variant: str
    description: str
    architecture: str  # kernel name
    source: dict[str, Any]
    packages: tuple[str, ...] = ()
    actions: tuple[tuple[str, str], ...] = ()  # (trigger, script)
    files: tuple[FileSpec, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class BuiltImage:
    paths: tuple[Path, ...]  # unified: (tarball,); split: (meta tarball, squashfs)
    fingerprint: str
    metadata: ImageMetadata
    cached: bool = False


# ---------------------------------------------------------------------------- recipe

def _str(section: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = section.get(key, default)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise RecipeError(f"Recipe {where}.{key} must be a non-empty string")
    return value


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    path = Path(path)
    doc = load_yaml(path.read_bytes())
    if not isinstance(doc, dict) or not isinstance(doc.get("image"), dict):
        raise RecipeError(f"Recipe {path.name} must be a mapping with an image section")
    image, source = doc["image"], doc.get("source")
    if not isinstance(source, dict) or source.get("downloader") not in ("debootstrap",
                                                                        "debian-package"):
        raise RecipeError("Recipe source.downloader must be debootstrap or debian-package")
    packages = doc.get("packages") or []
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise RecipeError("Recipe packages must be a list of package names")
    try:
        arch = kernel_arch(str(image.get("architecture") or host_arch()))
    except ImageFormatError as e:
        raise RecipeError(str(e)) from None
    return Recipe(
        name=path.name.removesuffix(".yaml").removesuffix(".yml"),
        distribution=_str(image, "distribution", "image"),
        release=_str(image, "release", "image"),
        variant=_str(image, "variant", "image", "default"),
        description=_str(image, "description", "image"),
        architecture=arch, source=source, packages=tuple(packages),
        actions=tuple(_action(a) for a in doc.get("actions") or []),
        files=tuple(_file(f) for f in doc.get("files") or []))


def _action(item: object) -> tuple[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("action"), str):
        raise RecipeError("Recipe actions must be mappings with an action script")
    trigger = item.get("trigger", "post-unpack")
    if trigger not in TRIGGERS:
        raise RecipeError(f"Recipe action trigger must be one of {', '.join(TRIGGERS)}")
    script = item["action"]
    return trigger, script if script.startswith("#!") else "#!/bin/sh\n" + script


def _file(item: object) -> FileSpec:
    if not isinstance(item, dict) or item.get("generator") not in GENERATORS:
        raise RecipeError(f"Recipe files need a generator: {', '.join(GENERATORS)}")
    path = item.get("path")
    if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
        raise RecipeError(f"Recipe file path {path!r} must be absolute without '..'")
    content = item.get("content", "")
    if not isinstance(content, str):
        raise RecipeError(f"Recipe file {path} content must be text")
    try:
        mode = parse_mode(item.get("mode"), f"Recipe file {path}")
    except ImageFormatError as e:
        raise RecipeError(str(e)) from None
    when = item.get("when", ["create", "copy"])
    return FileSpec(item["generator"], path, content, mode, tuple(when))


# ---------------------------------------------------------------------------- build

def build_image(recipe_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                fmt: str = "unified", cache_dir: str | os.PathLike[str] | None = None,
                progress: Progress | None = None) -> BuiltImage:
    if fmt not in FORMATS:
        raise RecipeError(f"Image format {fmt!r} is not one of {', '.join(FORMATS)}")
    say = progress or (lambda _msg: None)
    recipe_path, out = Path(recipe_path), Path(out_dir)
    recipe = load_recipe(recipe_path)
    key = hashlib.sha256(recipe_path.read_bytes() + f"\0{fmt}\0{_STAMP_VERSION}".encode())
    stamp = out / f"{recipe.name}.{fmt}.build.json"
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out / f".{recipe.name}.lock"):
        cached = _cached(stamp, key.hexdigest())
        if cached is not None:
            say(f"Using the cached build {stamp}")
            return cached
        for stale in out.glob(f".{glob.escape(recipe.name)}.*.build"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build
        cache = Path(cache_dir) if cache_dir is not None else out / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        built = _build(recipe, out, fmt, cache.resolve(), say)
        _write_stamp(stamp, key.hexdigest(), built)
    say(f"Built {', '.join(map(str, built.paths))} ({built.fingerprint[:12]})")
    return built


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per recipe and output directory at a time; a waiter then finds the cache."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build(recipe: Recipe, out: Path, fmt: str, cache: Path, say: Progress) -> BuiltImage:
    work = Path(tempfile.mkdtemp(prefix=f".{recipe.name}.", suffix=".build", dir=out))
    try:
        rootfs = work / "rootfs"
        started = time.monotonic()
        say(f"Building the {recipe.name} rootfs with {recipe.source['downloader']}")
        _SOURCES[recipe.source["downloader"]](recipe, rootfs, cache)
        _run_actions(recipe, "post-unpack", rootfs, say)
        templates = _apply_files(recipe, rootfs, work / "templates")
        _run_actions(recipe, "post-files", rootfs, say)
        metadata = _write_metadata(recipe, work, templates)
        say(f"Packing ({fmt}) after {time.monotonic() - started:.0f}s")
        return _pack(recipe.name, work, out, fmt, metadata)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cached(stamp: Path, key: str) -> BuiltImage | None:
    try:
        data = json.loads(stamp.read_text())
        paths = tuple(stamp.parent / name for name in data["files"])
        if data["key"] != key or [p.stat().st_size for p in paths] != data["sizes"]:
            return None
        return BuiltImage(paths, data["fingerprint"], parse_metadata(data["metadata"]),
                          cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_stamp(stamp: Path, key: str, built: BuiltImage) -> None:
    data = {"key": key, "files": [p.name for p in built.paths],
            "sizes": [p.stat().st_size for p in built.paths],
            "fingerprint": built.fingerprint, "metadata": built.metadata.to_yaml()}
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.rename(tmp, stamp)


def _debootstrap(recipe: Recipe, rootfs: Path, cache: Path) -> None:
    src = recipe.source
    debs = cache / "debootstrap" / f"{_str(src, 'suite', 'source')}-{recipe.architecture}"
    debs.mkdir(parents=True, exist_ok=True)
    argv = ["unshare", "--mount", "--propagation", "private", "debootstrap",
            f"--variant={_str(src, 'variant', 'source', 'minbase')}",
            f"--arch={debian_arch(recipe.architecture)}", f"--cache-dir={debs}"]
    if recipe.packages:
        argv.append("--include=" + ",".join(recipe.packages))
    argv += [_str(src, "suite", "source"), os.fspath(rootfs),
             _str(src, "url", "source", "http://deb.debian.org/debian")]
    run(argv)


def _debian_package(recipe: Recipe, rootfs: Path, cache: Path) -> None:
    """Extract .deb files fetched with the host's apt (kept in cache/debs)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    arch = debian_arch(recipe.architecture)
    rootfs.mkdir(mode=0o755)
    for package in recipe.packages or [_str(recipe.source, "package", "source")]:
        found = sorted(glob.glob(os.fspath(debs / f"{glob.escape(package)}_*_{arch}.deb")))
        if not found:
            run(["apt-get", "download", f"{package}:{arch}"], cwd=os.fspath(debs))
            found = sorted(glob.glob(os.fspath(debs / f"{glob.escape(package)}_*_{arch}.deb")))
        if not found:
            raise RecipeError(f"apt-get download left no {package} package in {debs}")
        run(["dpkg-deb", "-x", found[-1], os.fspath(rootfs)])


_SOURCES: dict[str, Callable[[Recipe, Path, Path], None]] = {
    "debootstrap": _debootstrap, "debian-package": _debian_package}


def _run_actions(recipe: Recipe, trigger: str, rootfs: Path, say: Progress) -> None:
    for n, (when, script) in enumerate(recipe.actions):
        if when != trigger:
            continue
        name = f".machined-action-{n}"
        say(f"Running {trigger} action {n} in the rootfs")
        _write_file(rootfs, f"/{name}", script.encode(), 0o700)
        try:
            run(["chroot", os.fspath(rootfs), f"/{name}"], env=_CHROOT_ENV)
        finally:
            os.unlink(rootfs / name)


def _open_parent(rootfs: Path, path: str) -> tuple[int, str]:
    """fd of the parent of `path` inside rootfs, walked without following symlinks (rootfs
    content comes from packages; a symlink there must not redirect host writes)."""
    parts = [p for p in path.split("/") if p]
    fd = os.open(rootfs, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                raise RecipeError(f"Recipe file {path} goes through a symlink or non-directory "
                                  "in the rootfs; name the real path") from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def _write_file(rootfs: Path, path: str, data: bytes, mode: int) -> None:
    parent, name = _open_parent(rootfs, path)
    try:
        try:
            if not stat.S_ISREG(os.lstat(name, dir_fd=parent).st_mode):
                raise RecipeError(f"Recipe file {path} exists in the rootfs but is not a "
                                  "regular file")
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        with open(fd, "wb") as fh:
            fh.write(data)
            os.fchown(fh.fileno(), 0, 0)
            os.fchmod(fh.fileno(), mode)
    finally:
        os.close(parent)


def _apply_files(recipe: Recipe, rootfs: Path, templates_dir: Path) -> dict[str, TemplateRule]:
    templates_dir.mkdir(mode=0o755)
    rules: dict[str, TemplateRule] = {}
    for spec in recipe.files:
        if spec.generator == "dump":
            _write_file(rootfs, spec.path, spec.content.encode(), spec.mode or 0o644)
        elif spec.generator == "remove":
            parent, name = _open_parent(rootfs, spec.path)
            try:
                os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            finally:
                os.close(parent)
        else:
            tpl, text = _GENERATED[spec.generator]
            (templates_dir / tpl).write_text(spec.content or text)
            rules[spec.path] = TemplateRule(path=spec.path, when=spec.when, template=tpl)
            if spec.generator == "hostname":  # filled in at create time
                _write_file(rootfs, spec.path, b"", spec.mode or 0o644)
    return rules


def _write_metadata(recipe: Recipe, work: Path, templates: dict[str, TemplateRule]
                    ) -> ImageMetadata:
    now = int(time.time())
    metadata = ImageMetadata(
        architecture=recipe.architecture, creation_date=now,
        properties={"os": recipe.distribution, "release": recipe.release,
                    "variant": recipe.variant,
                    "architecture": debian_arch(recipe.architecture),
                    "description": recipe.description,
                    "serial": time.strftime("%Y%m%d_%H:%M", time.gmtime(now))},
        templates=templates)
    (work / "metadata.yaml").write_text(metadata.to_yaml())
    return parse_metadata((work / "metadata.yaml").read_bytes())


_TAR = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--format=posix",
        "--pax-option=delete=atime,delete=ctime", "--sort=name"]


def _pack(name: str, work: Path, out: Path, fmt: str, metadata: ImageMetadata) -> BuiltImage:
    if fmt == "unified":
        final = out / f"{name}.tar.gz"
        tmp = out / f".{name}.tar.gz.tmp"
        run([*_TAR, "-I", "gzip -1", "-C", os.fspath(work), "-cf", os.fspath(tmp),
             "metadata.yaml", "templates", "rootfs"])
        os.rename(tmp, final)
        return BuiltImage((final,), fingerprint_file(final), metadata)
    meta, squash = out / f"{name}.meta.tar.xz", out / f"{name}.squashfs"
    meta_tmp, squash_tmp = out / f".{meta.name}.tmp", out / f".{squash.name}.tmp"
    run([*_TAR, "--owner=0", "--group=0", "-I", "xz -T1", "-C", os.fspath(work),
         "-cf", os.fspath(meta_tmp), "metadata.yaml", "templates"])
    run(["mksquashfs", os.fspath(work / "rootfs"), os.fspath(squash_tmp), "-noappend",
         "-comp", "zstd", "-Xcompression-level", "6", "-quiet", "-no-progress"])
    os.rename(meta_tmp, meta)
    os.rename(squash_tmp, squash)
    return BuiltImage((meta, squash), fingerprint_split(meta, squash), metadata)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m machined.images.build",
                                     description="Build an image from a recipe.")
    parser.add_argument("recipe")
    parser.add_argument("out_dir")
    parser.add_argument("--format", choices=FORMATS, default="unified")
    parser.add_argument("--cache-dir")
    args = parser.parse_args(argv)
    try:
        built = build_image(args.recipe, args.out_dir, fmt=args.format,
                            cache_dir=args.cache_dir,
                            progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (RecipeError, ImageFormatError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    for path in built.paths:
        print(path)
    print(f"fingerprint: {built.fingerprint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`mc simplestreams add|list|remove`: write a simplestreams image server tree from images
exported by machined, for any static web server to serve (`mc remote add NAME URL
--protocol simplestreams` then reads it, as do LXD and Incus).

Layout (as images.linuxcontainers.org):
    <dir>/streams/v1/index.json         the index: one products file
    <dir>/streams/v1/images.json        products: <os>:<release>:<arch>:<variant>
    <dir>/images/<os>/<release>/<arch>/<variant>/<serial>/
        lxd.tar.xz + rootfs.squashfs | rootfs.tar.xz    (split image)
        lxd_combined.tar.gz                              (unified image)
The serial is the image's creation time, `YYYYMMDD_hhmm` UTC. Files are hashed while they
stream from machined and checked against the image fingerprint; the JSON files are replaced
atomically, after the files they name are complete; one writer at a time (flock on <dir>).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

import machined.images.simplestreams as ss
from cli.context import Env, format_option, pass_env
from cli.errors import CliError
from cli.output import format_mib, render

_TAR_EXTENSIONS = (".tar.xz", ".tar.gz", ".tar.zst", ".tar.bz2", ".tar")


@click.group("simplestreams")
def simplestreams() -> None:
    """Write a simplestreams image server tree from local images.

    Serve the directory with any static web server, then add it as a remote:

    \b
        mc remote add NAME http(s)://HOST/PATH --protocol simplestreams
    """


class Tree:
    """A simplestreams tree on disk: its products document and files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.products_path = root / ss.PRODUCTS_PATH
        self.index_path = root / ss.INDEX_PATH

    def load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.products_path.read_text())
            ss.parse_products(doc)  # refuse to build on a malformed document
        except FileNotFoundError:
            return ss.empty_products()
        except (ValueError, OSError) as e:
            raise CliError(f"{self.products_path} is not a usable products file: {e}") from None
        return dict(doc)

    def images(self, doc: dict[str, Any]) -> list[ss.StreamImage]:
        images = ss.parse_products(doc)
        catalog = ss.Catalog(images, platform.machine())
        return catalog.list("container") + catalog.list("virtual-machine")

    def save(self, doc: dict[str, Any]) -> None:
        """images.json, then index.json, each replaced atomically."""
        self.products_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.products_path, json.dumps(doc, indent=2) + "\n")
        _write_atomic(self.index_path, json.dumps(ss.make_index(doc), indent=2) + "\n")

    @contextlib.contextmanager
    def locked(self, create: bool) -> Iterator[None]:
        """One writer at a time: an exclusive flock on the tree's directory itself."""
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise CliError(f"Cannot open the tree {self.root}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_atomic(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, _mode())
        os.rename(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- add

@simplestreams.command("add")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, metavar="[<remote>:]<image>...")
@click.option("--alias", "aliases", multiple=True,
              help="Extra alias for the images' products (repeatable).")
@pass_env
def add(env: Env, directory: Path, images: tuple[str, ...], aliases: tuple[str, ...]) -> None:
    """Add images to a simplestreams tree (created if missing).

    Each image becomes a version of the product os:release:arch:variant, with the aliases
    os/release/variant and, for the default variant, os/release. An image already in the
    tree is left as it is.
    """
    try:
        ss.check_aliases(list(aliases))
    except ss.StreamError as e:
        raise CliError(str(e)) from None
    tree = Tree(directory)
    created = not directory.exists()
    try:
        with tree.locked(create=True):
            doc = tree.load()
            for arg in images:
                doc = _add_one(env, tree, doc, arg, list(aliases))
    except BaseException:
        if created:  # a refused first add leaves no empty tree behind
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _add_one(env: Env, tree: Tree, doc: dict[str, Any], arg: str,
             aliases: list[str]) -> dict[str, Any]:
    from cli.commands.image import resolve_image
    from cli.commands.image_export import image_client

    client, name = image_client(env, arg)
    fingerprint = resolve_image(client, name)
    if ss.has_image(doc, fingerprint):
        env.say(f"Image {fingerprint[:12]} ({name}) is already in {tree.root}")
        return doc
    info = client.get(f"/1.0/images/{fingerprint}")
    if info.get("type", "container") != "container":
        raise CliError(f"Image {name!r} is a {info.get('type')}: only container images "
                       "can be added")
    entry = _Entry(fingerprint, name, {str(k): str(v) for k, v in
                                       (info.get("properties") or {}).items()},
                   str(info.get("architecture") or ""), str(info.get("created_at") or ""),
                   aliases)
    try:  # everything that can be refused is, before anything is downloaded
        serial = ss.pick_serial(doc, entry.properties, entry.architecture, entry.created_at)
        version_dir = ss.version_dir(entry.properties, entry.architecture, serial)
    except ss.StreamError as e:
        raise CliError(f"Cannot add {name!r}: {e}") from None
    with _new_dirs(tree.root, version_dir) as target:
        new_doc = _export_into(client, tree, doc, entry, version_dir, target)
    product = ss.product_name(entry.properties, entry.architecture)
    env.say(f"Added {name} ({fingerprint[:12]}) as {product} version {serial}")
    return new_doc


@dataclasses.dataclass
class _Entry:
    fingerprint: str
    name: str
    properties: dict[str, str]
    architecture: str
    created_at: str
    aliases: list[str]


def _export_into(client: Any, tree: Tree, doc: dict[str, Any], entry: _Entry,
                 version_dir: str, target: Path) -> dict[str, Any]:
    """Export the image's files into `target`, then record them: files complete and
    renamed into place first, the JSON last."""
    from cli.commands.image_export import discard, fetch

    parts = fetch(client, entry.fingerprint, target, label=f"Exporting {entry.name}")
    try:
        files, paths = [], []
        for part in parts:
            filename, ftype = _tree_name(part.role, part.filename, entry.name)
            files.append(ss.StreamFile(part.role, f"{version_dir}/{filename}", part.sha256,
                                       part.size, ftype))
            paths.append(target / filename)
        new_doc = ss.add_image(doc, fingerprint=entry.fingerprint,
                               properties=entry.properties, architecture=entry.architecture,
                               created_at=entry.created_at, aliases=entry.aliases,
                               files=files)
        mode = _mode()
        for part, path in zip(parts, paths, strict=True):
            os.chmod(part.temp, mode)
            os.rename(part.temp, path)
        _fsync_dir(target)
        tree.save(new_doc)
    except ss.StreamError as e:
        discard(parts)
        raise CliError(f"Cannot add {entry.name!r}: {e}") from None
    except BaseException:
        discard(parts)
        raise
    return new_doc


def _tree_name(role: str, served: str, name: str) -> tuple[str, str]:
    """(file name in the version directory, simplestreams ftype) for an exported file; the
    extension follows what machined found the bytes to be."""
    extension = next((e for e in (".squashfs", *_TAR_EXTENSIONS) if served.endswith(e)), "")
    if role == "unified":
        return f"lxd_combined{extension or '.tar.gz'}", "lxd_combined.tar.gz"
    if role == "meta":
        return f"lxd{extension or '.tar.xz'}", "lxd.tar.xz"
    if extension == ".squashfs":
        return "rootfs.squashfs", "squashfs"
    if extension:
        return f"rootfs{extension}", "root.tar.xz"
    raise CliError(f"Cannot tell the rootfs format of {name!r} (machined named it "
                   f"{served!r}): expected squashfs or a tarball")


@contextlib.contextmanager
def _new_dirs(root: Path, relative: str) -> Iterator[Path]:
    """Make root/relative; on failure remove the directories this made (if empty)."""
    made: list[Path] = []
    path = root
    for part in Path(relative).parts:
        path = path / part
        if not path.is_dir():
            path.mkdir()
            made.append(path)
    try:
        yield path
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


# ---------------------------------------------------------------------------- list

HEADER = ["FINGERPRINT", "ALIASES", "DESCRIPTION", "ARCHITECTURE", "TYPE", "SIZE", "SERIAL"]


@simplestreams.command("list")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@format_option
@pass_env
def list_cmd(env: Env, directory: Path, fmt: str) -> None:
    """List the images in a simplestreams tree."""
    tree = Tree(directory)
    if not tree.products_path.exists():
        raise CliError(f"{directory} has no {ss.PRODUCTS_PATH}: not a simplestreams tree "
                       "(mc simplestreams add creates one)")
    images = tree.images(tree.load())
    rows = [[i.fingerprint[:12], "\n".join(i.aliases), i.properties.get("description", ""),
             i.architecture, i.type.upper(), format_mib(i.size), i.serial]
            for i in images]
    raw = [dataclasses.asdict(i) for i in images]
    click.echo(render(fmt, HEADER, rows, raw), nl=False)


# ---------------------------------------------------------------------------- remove

@simplestreams.command("remove", short_help="Remove an image from a tree.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("fingerprint")
@pass_env
def remove(env: Env, directory: Path, fingerprint: str) -> None:
    """Remove an image (a fingerprint or unique prefix) and its files from a tree."""
    tree = Tree(directory)
    if not tree.products_path.exists():
        raise CliError(f"{directory} has no {ss.PRODUCTS_PATH}: not a simplestreams tree")
    with tree.locked(create=False):
        doc = tree.load()
        image = _find(tree.images(doc), fingerprint, directory)
        new_doc = ss.remove_image(doc, image.fingerprint)
        still_used = {f.path for i in ss.parse_products(new_doc) for f in i.files}
        tree.save(new_doc)  # the JSON stops naming the files before they go
        for f in image.files:
            if f.path not in still_used:
                (tree.root / f.path).unlink(missing_ok=True)
        _prune(tree.root, Path(image.files[0].path).parent)
    env.say(f"Removed {image.fingerprint[:12]} ({image.product} version {image.serial})")


def _find(images: list[ss.StreamImage], prefix: str, directory: Path) -> ss.StreamImage:
    matches = [i for i in images if prefix and i.fingerprint.startswith(prefix.lower())]
    if not matches:
        raise CliError(f"No image with fingerprint {prefix!r} in {directory}")
    if len(matches) > 1:
        raise CliError(f"Fingerprint prefix {prefix!r} matches {len(matches)} images in "
                       f"{directory}: give more characters")
    return matches[0]


def _prune(root: Path, relative: Path) -> None:
    """Remove the now empty directories of a version, up to (not including) images/."""
    while len(relative.parts) > 1:
        try:
            (root / relative).rmdir()
        except OSError:
            return  # not empty (another version or file) or already gone
        relative = relative.parent

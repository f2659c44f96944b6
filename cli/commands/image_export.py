"""`mc image export [<remote>:]<image> [<target>]`, and the verified streaming download of an
image's files that `mc simplestreams add` shares.

Files are streamed into temporary files next to their destination, hashed as they arrive and
checked against the fingerprint (sha256 of the unified file, or of the metadata bytes then
the rootfs bytes) before they are renamed into place: an interrupted or corrupted export
leaves nothing behind, and an existing file is replaced only by a complete, verified one.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import click

from cli.client import Client
from cli.context import Env, pass_env
from cli.errors import CliError

_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")
_PART_ROLES = {"metadata": "meta", "rootfs": "rootfs", "rootfs.img": "rootfs"}


@dataclass
class Part:
    """One file of an exported image, complete and verified, still under its temp name."""
    role: str  # "unified" | "meta" | "rootfs"
    filename: str  # the server's name for it if usable, else ""
    temp: Path
    sha256: str = ""
    size: int = 0


@dataclass
class _Sink:
    """Writes a part into its temp file, hashing it alone and into the combined digest."""
    part: Part
    combined: Any
    fh: BinaryIO
    digest: Any = field(default_factory=hashlib.sha256)

    def write(self, data: bytes | memoryview) -> int:
        self.fh.write(data)
        self.digest.update(data)
        self.combined.update(data)
        self.part.size += len(data)
        return len(data)


def safe_filename(name: str) -> str:
    """The server's file name if it is a plain name (never a path), else ""."""
    return name if _FILENAME.fullmatch(name) and ".." not in name else ""


def _disposition_filename(value: str) -> str:
    import email.message

    message = email.message.Message()
    message["content-disposition"] = value
    return str(message.get_filename("") or "")


class _Download:
    def __init__(self, fingerprint: str, directory: Path) -> None:
        self.fingerprint = fingerprint
        self.directory = directory
        self.combined = hashlib.sha256()
        self.sinks: list[_Sink] = []
        self.reader: Any = None

    def open(self, role: str, filename: str) -> _Sink:
        if len(self.sinks) >= 2 or (role == "rootfs") != bool(self.sinks):
            raise CliError("The export is not an image: expected one file, or a metadata "
                           "part then a rootfs part")
        fd, temp = tempfile.mkstemp(prefix=".mc-export-", dir=self.directory)
        part = Part(role, safe_filename(filename), Path(temp))
        sink = _Sink(part, self.combined, os.fdopen(fd, "wb"))
        self.sinks.append(sink)
        return sink

    def open_part(self, name: str, filename: str) -> _Sink:
        if name not in _PART_ROLES:
            raise CliError(f"Unexpected part {name!r} in the export: expected metadata, rootfs")
        return self.open(_PART_ROLES[name], filename)

    def sink(self, headers: dict[str, str]) -> Any:
        served = headers.get("x-lxd-fingerprint") or headers.get("x-incus-fingerprint")
        if served and served != self.fingerprint:
            raise CliError(f"The server exported image {served}, not {self.fingerprint}")
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/"):
            from cli.multipart import MultipartReader, boundary_of

            self.reader = MultipartReader(boundary_of(content_type), self.open_part)
            return self.reader
        name = _disposition_filename(headers.get("content-disposition", ""))
        return self.open("unified", name)

    def finish(self) -> list[Part]:
        if self.reader is not None:
            self.reader.close()
        for sink in self.sinks:
            sink.fh.flush()
            os.fsync(sink.fh.fileno())
            sink.fh.close()
            sink.part.sha256 = sink.digest.hexdigest()
        roles = [s.part.role for s in self.sinks]
        if roles not in (["unified"], ["meta", "rootfs"]):
            raise CliError("The export is not an image: expected one file, or a metadata "
                           "part then a rootfs part")
        if self.combined.hexdigest() != self.fingerprint:
            raise CliError(f"Image fingerprint doesn't match: the files hash to "
                           f"{self.combined.hexdigest()}, expected {self.fingerprint}")
        return [s.part for s in self.sinks]

    def discard(self) -> None:
        for sink in self.sinks:
            sink.fh.close()
            sink.part.temp.unlink(missing_ok=True)


def fetch(client: Client, fingerprint: str, directory: Path,
          label: str = "Exporting the image") -> list[Part]:
    """Download an image's files into temp files in `directory`, verified against its
    fingerprint. The caller renames them (or calls discard()); on error none is left."""
    from cli.transfer import Progress

    download = _Download(fingerprint, directory)
    progress = Progress(label, 0)
    try:
        def sink(headers: dict[str, str]) -> Any:
            progress.total = int(headers.get("content-length") or 0)
            return download.sink(headers)

        client.download(f"/1.0/images/{fingerprint}/export", sink, progress)
        if not download.sinks:
            raise CliError("The server sent no image file")
        return download.finish()
    except BaseException:
        download.discard()
        raise


def discard(parts: list[Part]) -> None:
    for part in parts:
        part.temp.unlink(missing_ok=True)


def _destinations(fingerprint: str, parts: list[Part], target: str | None
                  ) -> tuple[Path, list[Path]]:
    """Where LXD puts the files: into a target directory under the server's names; for a
    target file, a unified image gets the server name's extension appended and a split
    image's rootfs goes to `<target>.root`."""
    directory = Path(target or ".")
    if directory.is_dir():
        names = [p.filename or (fingerprint if p.role != "rootfs" else f"{fingerprint}.root")
                 for p in parts]
        return directory, [directory / n for n in names]
    path = Path(target or fingerprint)
    if not path.parent.is_dir():
        raise CliError(f"Cannot export to {path}: directory {path.parent} does not exist")
    if len(parts) == 1:
        _, dot, extension = parts[0].filename.partition(".")
        return path.parent, [Path(f"{path}.{extension}") if dot and extension else path]
    return path.parent, [path, Path(f"{path}.root")]


@click.command("export", short_help="Export an image's files.")
@click.argument("name", metavar="[<remote>:]<image>")
@click.argument("target", required=False, metavar="[<target>]")
@pass_env
def export(env: Env, name: str, target: str | None) -> None:
    """Export an image's files (to the current directory, a directory or a file name).

    A unified image is one tarball; a split image is its metadata tarball and its rootfs
    (a target file name gets the rootfs as <target>.root), as LXD writes them.
    """
    from cli.commands.image import resolve_image

    client, image = image_client(env, name)
    fingerprint = resolve_image(client, image)
    directory, _ = _destinations(fingerprint, [Part("unified", "", Path())], target)
    parts = fetch(client, fingerprint, directory)
    try:
        _, paths = _destinations(fingerprint, parts, target)
        placed = list(zip(parts, paths, strict=True))
        for part, path in placed:
            _check_free(part, path, fingerprint)
        mode = 0o666 & ~_umask()
        for part, path in placed:
            os.chmod(part.temp, mode)
            if _server_named(part, path, fingerprint):
                os.link(part.temp, path)  # never replaces (FileExistsError)
                os.unlink(part.temp)
            else:
                os.rename(part.temp, path)
    except BaseException:
        discard(parts)
        raise
    env.say("Image exported successfully!")


def _server_named(part: Part, path: Path, fingerprint: str) -> bool:
    """Whether the server chose this file's whole name (and it is not an image-like name
    with the fingerprint in it)."""
    return path.name == part.filename and fingerprint not in part.filename


def _check_free(part: Part, path: Path, fingerprint: str) -> None:
    """A name the server chose never replaces a file, as curl -J: else a hostile remote could
    name its export `Makefile` and replace the one in the current directory."""
    if _server_named(part, path, fingerprint) and os.path.lexists(path):
        raise CliError(f"{path} already exists (the server named its file "
                       f"{part.filename!r}): export into another directory, or give a target "
                       "file name")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def image_client(env: Env, arg: str) -> tuple[Client, str]:
    """The API client and image name for `[<remote>:]<image>` (a machined remote)."""
    remote, image = env.split(arg)
    if not image:
        raise CliError(f'Missing image name in "{arg}"')
    if remote != "local":
        protocol = getattr(env.config().get(remote), "protocol", "")
        if protocol == "simplestreams":
            raise CliError(f'"{remote}" is a simplestreams image server: its files are on its '
                           f"web server already; copy the image to local: first "
                           f"(mc image copy {remote}:{image} local:)")
    return env.client(remote), image

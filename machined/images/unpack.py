"""Safe unpacking of image files into an image volume (metadata.yaml, rootfs/, templates/).

The archive is the adversary. tarfile only parses; every entry is created here, relative to
directory file descriptors that were opened one component at a time with O_NOFOLLOW, so a
symlink planted by an earlier member is never followed (opening through it fails with ELOOP).
Names are normalised (leading './', empty and '.' components dropped); absolute names and '..'
components are refused. Hard links may only point at entries this run created itself. Device
nodes are skipped (containers get a tmpfs /dev). Everything is written into a private (0700)
temporary sibling of the destination, which is renamed into place only when complete and
removed on any failure; nothing else writes there, so the archive itself is the only racer.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import io
import logging
import lzma
import os
import queue
import shutil
import stat
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from machined.images.format import (
    METADATA_MAX_BYTES,
    ArchiveKind,
    ImageFormatError,
    ImageMetadata,
    detect_file,
    load_metadata,
)
from machined.storage.dir import remove_tree
from machined.sys.run import CommandError, run

log = logging.getLogger(__name__)

Parts = tuple[str, ...]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR_PREFIXES = ("user.", "security.", "system.posix_acl_")
_MAX_OPEN_DIRS = 256
_COPY_CHUNK = 1024 * 1024


@dataclass
class UnpackReport:
    metadata: ImageMetadata
    devices_skipped: int = 0
    ignored: int = 0  # members outside metadata.yaml, rootfs/ and templates/
    xattrs_failed: int = 0


# Maps a normalised archive name to where it goes in the volume, or None to ignore it.
Mapper = Callable[[Parts], Parts | None]


def split_name(name: str) -> Parts:
    """An archive member name as path components; refuses absolute names and '..'."""
    if name.startswith("/"):
        raise ImageFormatError(f"Archive member {name!r} has an absolute name, which is refused")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ImageFormatError(f"Archive member {name!r} contains '..', which is refused")
    return parts


def _unified_map(parts: Parts) -> Parts | None:
    if not parts or parts[0] not in ("metadata.yaml", "rootfs", "templates"):
        return None
    return parts


def _meta_map(parts: Parts) -> Parts | None:
    return parts if parts and parts[0] in ("metadata.yaml", "templates") else None


def _rootfs_map(parts: Parts) -> Parts:
    return ("rootfs", *parts)


class _Extractor:
    """Creates archive members below root_fd, one fd-relative step at a time."""

    def __init__(self, root_fd: int, report: UnpackReport) -> None:
        self.root_fd = root_fd
        self.report = report
        self.as_root = os.geteuid() == 0
        self._fds: dict[Parts, int] = {}
        self._dirs: dict[Parts, tuple[int, int | None]] = {}  # final mode, mtime_ns
        self._made: set[Parts] = set()  # non-directories created by this run
        self._member = ""

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def ensure_dir(self, parts: Parts) -> None:
        self._dir(parts)

    def _dir(self, parts: Parts) -> int:
        """fd of directory `parts`, creating missing components (root:root 0755)."""
        if not parts:
            return self.root_fd
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        parent, name = self._dir(parts[:-1]), parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=parent)
            self._dirs.setdefault(parts, (0o755, None))
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise ImageFormatError(f"Archive member {self._member!r} goes through "
                                   f"{'/'.join(parts)!r}, which is not a directory") from None
        if len(self._fds) >= _MAX_OPEN_DIRS:
            self.close()
        self._fds[parts] = fd
        return fd

    def _check_link(self, info: tarfile.TarInfo, parts: Parts,
                    link_target: Parts | None) -> None:
        if link_target is None or link_target not in self._made:
            raise ImageFormatError(f"Hard link {info.name!r} points at {info.linkname!r}, "
                                   "which is not an earlier file of this archive")
        # A rootfs file linked to metadata.yaml or a template would let the container rewrite
        # what the host reads and renders on every start.
        if link_target[0] != parts[0]:
            raise ImageFormatError(f"Hard link {info.name!r} points at {info.linkname!r}, "
                                   "outside its own part of the image")

    def add(self, info: tarfile.TarInfo, parts: Parts, data: IO[bytes] | None,
            link_target: Parts | None) -> None:
        self._member = info.name
        if info.ischr() or info.isblk():
            self.report.devices_skipped += 1
            return
        if not parts:  # the volume root itself ('.' in a rootfs tarball maps to rootfs)
            raise ImageFormatError(f"Archive member {info.name!r} names the image root")
        if info.isdir():
            self._add_dir(info, parts)
            return
        if info.islnk():
            self._check_link(info, parts, link_target)
            # The target's directory first: looking up `parent` after it could evict (close)
            # the target's fd from the cache of open directories.
            self._dir(link_target[:-1])  # type: ignore[index]
        parent, name = self._dir(parts[:-1]), parts[-1]
        self._clear(parent, name, parts)
        if info.isreg():
            self._add_file(info, parent, name, data)
        elif info.issym():
            os.symlink(info.linkname, name, dir_fd=parent)
            self._own(None, info, parent, name)
            os.utime(name, ns=_ns(info), dir_fd=parent, follow_symlinks=False)
        elif info.islnk():
            assert link_target is not None
            target_parent = self._dir(link_target[:-1])
            os.link(link_target[-1], name, src_dir_fd=target_parent, dst_dir_fd=parent,
                    follow_symlinks=False)
        elif info.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent)
            self._own(None, info, parent, name)
            os.chmod(name, _mode(info), dir_fd=parent)
            os.utime(name, ns=_ns(info), dir_fd=parent)
        else:
            self.report.ignored += 1
            return
        self._made.add(parts)

    def _clear(self, parent: int, name: str, parts: Parts) -> None:
        """A later member replaces an earlier non-directory, as GNU tar does."""
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise ImageFormatError(f"Archive member {self._member!r} would replace the "
                                   f"directory {'/'.join(parts)!r}")
        os.unlink(name, dir_fd=parent)

    def _add_dir(self, info: tarfile.TarInfo, parts: Parts) -> None:
        parent, name = self._dir(parts[:-1]), parts[-1]
        try:
            st = os.lstat(name, dir_fd=parent)
            if not stat.S_ISDIR(st.st_mode):
                self._clear(parent, name, parts)
        except FileNotFoundError:
            pass
        fd = self._dir(parts)
        self._own(fd, info)
        self._xattrs(fd, info)
        self._dirs[parts] = (_mode(info), _ns(info)[1])

    def _add_file(self, info: tarfile.TarInfo, parent: int, name: str,
                  data: IO[bytes] | None) -> None:
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            if data is not None and info.size:
                with open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(data, out, _COPY_CHUNK)
            self._own(fd, info)
            self._xattrs(fd, info)
            os.fchmod(fd, _mode(info))  # after chown, which clears setuid bits
            os.utime(fd, ns=_ns(info))
        finally:
            os.close(fd)

    def _own(self, fd: int | None, info: tarfile.TarInfo, parent: int = -1,
             name: str = "") -> None:
        if not self.as_root:
            return
        if fd is not None:
            os.fchown(fd, info.uid, info.gid)
        else:
            os.chown(name, info.uid, info.gid, dir_fd=parent, follow_symlinks=False)

    def _xattrs(self, fd: int, info: tarfile.TarInfo) -> None:
        for key, value in info.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if not attr.startswith(_XATTR_PREFIXES):
                continue
            try:
                os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
            except OSError:
                self.report.xattrs_failed += 1

    def finish(self) -> None:
        """Directory modes and mtimes last: creating entries inside changes them."""
        for parts in sorted(self._dirs, key=len, reverse=True):
            mode, mtime = self._dirs[parts]
            fd = self._dir(parts)
            os.fchmod(fd, mode)
            if mtime is not None:
                os.utime(fd, ns=(mtime, mtime))


def _mode(info: tarfile.TarInfo) -> int:
    return info.mode & 0o7777


def _ns(info: tarfile.TarInfo) -> tuple[int, int]:
    ns = int(info.mtime * 1_000_000_000)
    return ns, ns


def _extract(archive: Path, ex: _Extractor, mapper: Mapper, scratch: Path) -> None:
    kind = detect_file(archive)
    if not kind.is_tar:
        raise ImageFormatError(f"{archive.name} is a {kind.value} file, not a tarball")
    with _tar_source(archive, kind, scratch) as source:
        try:
            with tarfile.open(fileobj=source, mode="r|", encoding="utf-8",
                              errors="surrogateescape") as tar:
                for info in tar:
                    _extract_member(tar, info, ex, mapper)
        except (tarfile.TarError, EOFError) as e:
            raise ImageFormatError(f"{archive.name} is not a readable tarball ({e})") from None


def _extract_member(tar: tarfile.TarFile, info: tarfile.TarInfo, ex: _Extractor,
                    mapper: Mapper) -> None:
    parts = mapper(split_name(info.name))
    if parts is None:
        ex.report.ignored += 1
        return
    top = parts[0]
    if parts == ("metadata.yaml",):
        if not info.isreg():
            raise ImageFormatError("metadata.yaml in the archive must be a regular file")
        if info.size > METADATA_MAX_BYTES:
            raise ImageFormatError(f"metadata.yaml is larger than the {METADATA_MAX_BYTES} "
                                   "bytes accepted")
    elif len(parts) == 1 and not info.isdir():
        raise ImageFormatError(f"{top}/ in the archive must be a directory, not a link or file")
    elif top == "templates" and not (info.isreg() or info.isdir()):
        raise ImageFormatError(f"Archive member {info.name!r}: templates/ may only hold "
                               "regular files and directories")
    link: Parts | None = None
    if info.islnk():
        link = mapper(split_name(info.linkname))
    data = tar.extractfile(info) if info.isreg() else None
    ex.add(info, parts, data, link)


class _Decompressor(io.RawIOBase):
    """Decompresses in a background thread (zlib, lzma and bz2 release the GIL), so that
    inflating and creating files use two cores. Handles multi-member gzip/xz streams."""

    _EOF = b""

    def __init__(self, fh: IO[bytes], kind: ArchiveKind) -> None:
        super().__init__()
        self._fh, self._kind = fh, kind
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=16)
        self._buf = memoryview(b"")
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="image-decompress", daemon=True)
        self._thread.start()

    def _new(self) -> Any:
        if self._kind is ArchiveKind.GZIP:
            return zlib.decompressobj(wbits=31)
        if self._kind is ArchiveKind.XZ:
            return lzma.LZMADecompressor()
        if self._kind is ArchiveKind.LZMA:
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        return bz2.BZ2Decompressor()

    def _pump(self) -> None:
        try:
            dec, members, partial = self._new(), 0, False
            while not self._stop.is_set():
                raw = self._fh.read(_COPY_CHUNK)
                if not raw:
                    if partial or not members:
                        raise EOFError("compressed stream ended early")
                    break
                while raw and (partial or raw.strip(b"\0")):  # tolerate zero padding
                    partial = True
                    out = dec.decompress(raw)
                    if out:
                        self._put(out)
                    if not dec.eof:
                        break
                    raw, members, partial = dec.unused_data, members + 1, False
                    dec = self._new()
            self._put(self._EOF)
        except BaseException as e:  # handed to the reading thread
            self._put(e if isinstance(e, EOFError | OSError | lzma.LZMAError | zlib.error)
                      else RuntimeError(e))

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._done:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise tarfile.ReadError(f"invalid compressed data: {item}")
            if not item:
                self._done = True
            self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()


@contextmanager
def _tar_source(archive: Path, kind: ArchiveKind, scratch: Path) -> Iterator[IO[bytes]]:
    """The uncompressed tar stream. zstd and lz4 (which this Python cannot decompress) are
    expanded by their tools into a scratch file first."""
    plain: Path | None = None
    if kind in (ArchiveKind.ZSTD, ArchiveKind.LZ4):
        fd, name = tempfile.mkstemp(prefix=f".{kind.value}-", suffix=".tar", dir=scratch)
        os.close(fd)
        plain = Path(name)
        src, dst = os.fspath(archive), os.fspath(plain)
        try:
            run(["zstd", "-d", "-q", "-f", "-o", dst, src] if kind is ArchiveKind.ZSTD
                else ["lz4", "-d", "-q", "-f", src, dst])
        except CommandError as e:
            plain.unlink()
            raise ImageFormatError(f"{archive.name} is not a readable {kind.value} file") from e
        archive, kind = plain, ArchiveKind.TAR
    try:
        with open(archive, "rb") as fh:
            if kind is ArchiveKind.TAR:
                yield fh
            else:
                with io.BufferedReader(_Decompressor(fh, kind), _COPY_CHUNK) as stream:
                    yield cast(IO[bytes], stream)
    finally:
        if plain is not None:
            plain.unlink()


@contextmanager
def _staging(dest: Path) -> Iterator[tuple[Path, int, UnpackReport]]:
    """A private sibling of dest; renamed to dest on success, removed on failure."""
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "Image destination already exists", str(dest))
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".unpack", dir=dest.parent))
    try:
        fd = os.open(tmp, _DIR_FLAGS)
        try:
            report = UnpackReport(metadata=ImageMetadata("x86_64", 0))
            yield tmp, fd, report
        finally:
            os.close(fd)
        os.rename(tmp, dest)
    except BaseException:
        # Not shutil.rmtree: it recurses, and a hostile archive can nest deeper than that.
        with contextlib.suppress(OSError):
            remove_tree(Path(tmp))
        raise


def _finish(tmp: Path, fd: int, report: UnpackReport) -> None:
    for name, want in (("metadata.yaml", stat.S_ISREG), ("rootfs", stat.S_ISDIR)):
        try:
            st = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            raise ImageFormatError(f"The image has no {name}") from None
        if not want(st.st_mode):
            raise ImageFormatError(f"The image's {name} has the wrong file type")
    report.metadata = load_metadata(tmp / "metadata.yaml")
    for rule in report.metadata.templates.values():
        path = tmp / "templates" / rule.template
        if not path.is_file() or path.is_symlink() or (tmp / "templates").is_symlink():
            raise ImageFormatError(f"Template {rule.template!r} for {rule.path!r} is missing "
                                   "from templates/")
    if report.devices_skipped:
        log.warning("Skipped %d device nodes of the image (containers get a tmpfs /dev)",
                    report.devices_skipped)


def unpack_unified(tarball: str | os.PathLike[str], dest: str | os.PathLike[str]) -> UnpackReport:
    """Unpack a unified image (metadata.yaml, rootfs/, templates/ in one tarball) to dest,
    which must not exist."""
    dest = Path(dest)
    with _staging(dest) as (tmp, fd, report):
        ex = _Extractor(fd, report)
        try:
            _extract(Path(tarball), ex, _unified_map, dest.parent)
            ex.finish()
        finally:
            ex.close()
        _finish(tmp, fd, report)
    return report


def unpack_split(meta_tarball: str | os.PathLike[str], rootfs_file: str | os.PathLike[str],
                 dest: str | os.PathLike[str]) -> UnpackReport:
    """Unpack a split image: metadata.yaml and templates/ from the metadata tarball, and the
    rootfs from a squashfs or a tarball whose root is the rootfs. dest must not exist."""
    dest, rootfs_file = Path(dest), Path(rootfs_file)
    with _staging(dest) as (tmp, fd, report):
        ex = _Extractor(fd, report)
        try:
            _extract(Path(meta_tarball), ex, _meta_map, dest.parent)
            kind = detect_file(rootfs_file)
            if kind is ArchiveKind.SQUASHFS:
                ex.finish()
                _unsquash(rootfs_file, tmp / "rootfs", report)
            else:
                ex.ensure_dir(("rootfs",))
                _extract(rootfs_file, ex, _rootfs_map, dest.parent)
                ex.finish()
        finally:
            ex.close()
        _finish(tmp, fd, report)
    return report


def _unsquash(squashfs: Path, target: Path, report: UnpackReport) -> None:
    """unsquashfs into a fresh directory (4.5.1 refuses traversal names), then drop device
    nodes, which unsquashfs running as root would have created."""
    proc = run(["unsquashfs", "-no-progress", "-d", os.fspath(target), os.fspath(squashfs)],
               check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ImageFormatError(f"{squashfs.name} could not be unpacked by unsquashfs: {tail[0]}")
    st = os.lstat(target)
    if not stat.S_ISDIR(st.st_mode):
        raise ImageFormatError("The squashfs root is not a directory")
    for _dirpath, _dirs, files, dir_fd in os.fwalk(target, follow_symlinks=False):
        for name in files:
            mode = os.lstat(name, dir_fd=dir_fd).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                os.unlink(name, dir_fd=dir_fd)
                report.devices_skipped += 1

"""Pure rules of the files API: path normalisation, the X-LXD-* headers (LXD's
ParseLXDFileHeaders semantics), id ranges, and which owner and mode a pushed file gets."""

from __future__ import annotations

import posixpath
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from machined.errors import BadRequest

FILE_TYPES = ("file", "directory", "symlink")
WRITE_MODES = ("overwrite", "append")
PERM_FIELDS = ("uid", "gid", "mode")
MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "unchanged" to the kernel
MAX_PATH = 4096
DEFAULT_FILE_MODE = 0o644
DEFAULT_DIR_MODE = 0o750  # LXD's server default for directories

IdRanges = list[tuple[int, int]]  # (first id, count) as the container sees them


def normalize_path(raw: str | None) -> str:
    """An absolute, lexically cleaned path (LXD: prefix '/' then path.Clean). '..' cannot
    climb above '/', and whatever the path says, it is resolved inside the rootfs later."""
    if raw is None or raw == "":
        raise BadRequest("Missing path argument")
    if "\0" in raw:
        raise BadRequest("The path contains a NUL byte")
    if len(raw.encode()) > MAX_PATH:
        raise BadRequest(f"The path is longer than {MAX_PATH} bytes")
    return posixpath.normpath("/" + raw.lstrip("/"))


def archive_parts(name: str) -> tuple[str, ...]:
    """A tar member name as path components below the target directory. Absolute names and
    '..' are refused outright (as images/unpack.py does), not cleaned into something else."""
    if "\0" in name:
        raise BadRequest(f"Archive member {name!r} contains a NUL byte")
    if len(name.encode(errors="surrogateescape")) > MAX_PATH:
        raise BadRequest(f"Archive member name {name[:64]!r}... is longer than {MAX_PATH} bytes")
    if name.startswith("/"):
        raise BadRequest(f"Archive member {name!r} has an absolute name, which is refused")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise BadRequest(f"Archive member {name!r} contains '..', which is refused")
    if not parts:
        raise BadRequest(f"Archive member {name!r} names the target directory itself")
    return parts


MAX_ARCHIVE_HEADER = 1 << 20
_EXTENDED_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                     tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class ArchiveInfo(tarfile.TarInfo):
    """tarfile reads an extended header (pax, GNU long name/link) whole into memory, and a
    sparse map for as long as the stream goes on (old GNU extension blocks, pax 1.0 maps):
    big headers and sparse members are refused before that happens. Pass as
    tarfile.open(..., tarinfo=ArchiveInfo)."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADERS and self.size > MAX_ARCHIVE_HEADER:
            raise BadRequest(f"The archive has an extended header (pax or GNU long name) of "
                             f"{self.size} bytes: at most {MAX_ARCHIVE_HEADER} are accepted")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _sparse(self.name)
        member = super()._proc_member(archive)  # type: ignore[misc]
        if member.sparse is not None:
            raise _sparse(member.name)
        return member

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: dict[str, str],
                           archive: tarfile.TarFile) -> None:
        raise _sparse(pax_headers.get("GNU.sparse.name", next.name))


def _sparse(name: str) -> BadRequest:
    return BadRequest(f"Archive member {name!r} is a sparse file, which is not accepted (only "
                      "files, directories and symlinks)")


def under_link(parts: tuple[str, ...], links: set[tuple[str, ...]]) -> bool:
    """Whether a member would be created through a symlink an earlier member made (never
    followed, as images/unpack.py does)."""
    return any(parts[:i] in links for i in range(1, len(parts)))


@dataclass(frozen=True)
class PushHeaders:
    """A POST's X-LXD-* headers; None means "not given"."""

    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    type: str = "file"
    write: str = "overwrite"
    modify: frozenset[str] = frozenset()


def parse_id(field: str, raw: str | None) -> int | None:
    """X-LXD-uid/gid: a base-10 integer; -1 (LXD's "unset") and absence give None."""
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not (text.isdigit() or (text.startswith("-") and text[1:].isdigit())):
        raise BadRequest(f"Invalid X-LXD-{field} {raw!r}: expected a decimal number")
    value = int(text)
    if value == -1:
        return None
    if not 0 <= value <= MAX_ID:
        raise BadRequest(f"Invalid X-LXD-{field} {raw!r}: accepted are 0 to {MAX_ID}")
    return value


def parse_mode(raw: str | None) -> int | None:
    """X-LXD-mode: decimal, or octal with a leading 0 (LXD). Accepted: 0 to 07777
    (permission bits plus setuid/setgid/sticky)."""
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    try:
        if text == "-1":
            return None
        if text.startswith(("0o", "0O")):
            value = int(text[2:], 8)
        elif len(text) > 1 and text.startswith("0"):
            value = int(text, 8)
        elif text.isdigit():
            value = int(text, 10)
        else:
            raise ValueError(text)
    except ValueError:
        raise BadRequest(f"Invalid X-LXD-mode {raw!r}: expected an octal mode with a leading "
                         "0 (like 0644) or a decimal number") from None
    if not 0 <= value <= 0o7777:
        raise BadRequest(f"Invalid X-LXD-mode {raw!r}: accepted are 0 to 07777")
    return value


def parse_push_headers(get: Callable[[str], str | None]) -> PushHeaders:
    """`get(field)` returns the X-LXD-<field> (or X-Incus-<field>) header, or None."""
    kind = (get("type") or "file").strip()
    if kind not in FILE_TYPES:
        raise BadRequest(f"Invalid X-LXD-type {kind!r}: accepted are " + ", ".join(FILE_TYPES))
    write = (get("write") or "overwrite").strip()
    if write not in WRITE_MODES:
        raise BadRequest(f"Invalid X-LXD-write {write!r}: accepted are "
                         + ", ".join(WRITE_MODES))
    modify = set()
    for item in (get("modify-perm") or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item not in PERM_FIELDS:
            raise BadRequest(f"Invalid X-LXD-modify-perm entry {item!r}: accepted are "
                             + ", ".join(PERM_FIELDS))
        modify.add(item)
    return PushHeaders(uid=parse_id("uid", get("uid")), gid=parse_id("gid", get("gid")),
                       mode=parse_mode(get("mode")), type=kind, write=write,
                       modify=frozenset(modify))


def check_ids(headers: PushHeaders, uids: IdRanges, gids: IdRanges) -> None:
    """Refuse ids the container cannot see (LXD silently ignores them instead)."""
    for field, value, ranges in (("uid", headers.uid, uids), ("gid", headers.gid, gids)):
        if value is None:
            continue
        if not any(first <= value < first + count for first, count in ranges):
            accepted = ", ".join(f"{first}-{first + count - 1}" for first, count in ranges)
            raise BadRequest(f"X-LXD-{field} {value} is outside the ids the instance maps "
                             f"(accepted: {accepted or 'none'})")


@dataclass(frozen=True)
class Perms:
    """What to apply: -1 leaves a field alone."""

    uid: int
    gid: int
    mode: int


def new_perms(headers: PushHeaders, default_mode: int) -> Perms:
    """A new entry gets every given field; missing ones default to root and default_mode."""
    return Perms(_or(headers.uid, 0), _or(headers.gid, 0), _or(headers.mode, default_mode))


def changed_perms(headers: PushHeaders) -> Perms:
    """An existing entry changes only the fields listed in X-LXD-modify-perm."""
    def pick(field: str, value: int | None) -> int:
        return value if field in headers.modify and value is not None else -1

    return Perms(pick("uid", headers.uid), pick("gid", headers.gid),
                 pick("mode", headers.mode))


def replaced_perms(headers: PushHeaders, old_uid: int, old_gid: int, old_mode: int) -> Perms:
    """A regular file replaced by a new inode (temporary file renamed over it) keeps its
    owner and mode, except for the fields X-LXD-modify-perm asks to change."""
    change = changed_perms(headers)
    return Perms(old_uid if change.uid < 0 else change.uid,
                 old_gid if change.gid < 0 else change.gid,
                 old_mode if change.mode < 0 else change.mode)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def format_mode(mode: int) -> str:
    return f"{mode & 0o7777:04o}"


def format_modified(mtime: float) -> str:
    """As Go's Time.UTC().String() prints it, which is what LXD sends in X-LXD-modified."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(mtime))


def entry_headers(kind: str, uid: int, gid: int, mode: int, mtime: float) -> dict[str, str]:
    return {"X-LXD-uid": str(uid), "X-LXD-gid": str(gid), "X-LXD-mode": format_mode(mode),
            "X-LXD-type": kind, "X-LXD-modified": format_modified(mtime)}

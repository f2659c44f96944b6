"""What publishing an instance produces, planned purely: the request checked, the new
metadata.yaml, the tar and compressor command lines, and the progress line.
machined/images/publish.py runs the plan. Stdlib + images.format only, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from machined.images.format import (
    METADATA_MAX_BYTES,
    ImageFormatError,
    ImageMetadata,
    kernel_arch,
)

COMPRESSIONS = ("bzip2", "gzip", "lz4", "lzma", "xz", "zstd", "none")
DEFAULT_COMPRESSION = "gzip"

# One progress line from tar per CHECKPOINT_RECORDS records of 10 KiB (about 1 MiB), with
# the bytes written so far (%{w}T prints "<bytes> (<human>, <rate>)").
CHECKPOINT_RECORDS = 100
_CHECKPOINT = re.compile(r"^tar: machined-checkpoint (\d+) ")

# xattr namespaces kept, as the unpacker restores them (trusted.* is host business).
_XATTRS = ("user.*", "security.*")


@dataclass(frozen=True)
class PublishPlan:
    """A checked publish request."""
    name: str
    aliases: tuple[tuple[str, str], ...]  # (name, description)
    properties: dict[str, str]
    compression: str


def check_source(name: object) -> str:
    """An instance name, or instance/snapshot."""
    if (not isinstance(name, str) or not name or name.startswith("/")
            or name.endswith("/")):
        raise ValueError(f"The publish source needs an instance name (or instance/snapshot), "
                         f"not {name!r}")
    return name


def check_compression(value: object) -> str:
    if not isinstance(value, str) or value not in COMPRESSIONS:
        raise ValueError(f"Invalid compression algorithm {value!r}: accepted are "
                         f"{', '.join(COMPRESSIONS)}")
    return value


def check_alias_name(name: object) -> str:
    """An alias name as LXD takes it, minus what breaks `remote:alias` (':'), URLs and
    tables (control characters: an alias with a newline could be made but never deleted)."""
    if (not isinstance(name, str) or not name or name.strip() != name or ":" in name
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ValueError(f"Invalid alias name {name!r}: a non-empty name without ':', "
                         "control characters or surrounding spaces")
    return name


def check_aliases(value: object) -> tuple[tuple[str, str], ...]:
    """The request's `aliases`: a list of {"name", "description"}; names listed once."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError('Image aliases must be a list of {"name": ..., "description": ...}')
    out: list[tuple[str, str]] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise ValueError(f'Image alias {entry!r} must be an object with a "name"')
        name = check_alias_name(entry.get("name"))
        description = entry.get("description") or ""
        if not isinstance(description, str):
            raise ValueError(f"Image alias {name!r}: the description must be a string")
        if any(name == seen for seen, _ in out):
            raise ValueError(f"Image alias {name!r} is listed twice")
        out.append((name, description))
    return tuple(out)


def check_properties(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("Image properties must be an object of names to strings")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key or "\0" in key:
            raise ValueError(f"Invalid image property name {key!r}")
        if isinstance(val, bool):
            val = "true" if val else "false"
        elif isinstance(val, int | float):
            val = str(val)
        if not isinstance(val, str) or "\0" in val:
            raise ValueError(f"Image property {key!r} must be a string")
        out[key] = val
    return out


def plan(name: object, *, aliases: object, properties: object,
         compression: object, server_default: str = "") -> PublishPlan:
    """Check a publish request; raises ValueError with a sentence saying what is wrong.
    No compression (None or "") means the server key images.compression_algorithm."""
    algorithm = compression if compression not in (None, "") else (
        server_default or DEFAULT_COMPRESSION)
    return PublishPlan(name=check_source(name), aliases=check_aliases(aliases),
                       properties=check_properties(properties),
                       compression=check_compression(algorithm))


# ---------------------------------------------------------------------------- metadata.yaml

def default_description(properties: Mapping[str, str], name: str) -> str:
    base = " ".join(p for p in (properties.get("os", ""), properties.get("release", "")) if p)
    base = base or properties.get("description", "") or "Image"
    return f"{base} (published from {name})"


def published_metadata(original: ImageMetadata | None, *, architecture: str,
                       config: Mapping[str, str], properties: Mapping[str, str], name: str,
                       now: datetime) -> ImageMetadata:
    """The image's metadata.yaml: created now, with the instance's architecture, the
    properties of the image it came from (metadata.yaml, then the instance's image.* keys)
    overridden by the request's, and the same templates. A fresh serial (unless given)
    keeps a published image from passing for a version of the image it came from."""
    props = dict(original.properties) if original is not None else {}
    props.update({k[len("image."):]: v for k, v in config.items()
                  if k.startswith("image.") and len(k) > len("image.")})
    props["description"] = default_description(props, name)
    props["serial"] = now.astimezone(UTC).strftime("%Y%m%d_%H:%M")
    props.update(properties)
    meta = ImageMetadata(
        architecture=kernel_arch(architecture), creation_date=int(now.timestamp()),
        properties=props, templates=dict(original.templates) if original is not None else {})
    if len(meta.to_yaml().encode()) > METADATA_MAX_BYTES:
        raise ImageFormatError(f"The image properties make metadata.yaml larger than the "
                               f"{METADATA_MAX_BYTES} bytes accepted")
    return meta


# ---------------------------------------------------------------------------- commands

def tar_argv(staging: str, container: str, *, templates: bool) -> list[str]:
    """GNU tar writing the unified image to stdout: metadata.yaml from `staging`, then
    templates/ and rootfs/ from the container's directory. The rootfs is hostile, so tar
    never follows a link (no -h), stays on the rootfs' filesystem, stores numeric ids (the
    rootfs holds container ids unshifted), and only fixed names are on its command line.
    Sub-second times are left out of the pax headers: most members then need none."""
    argv = ["tar", "--create", "--file=-", "--format=posix", "--numeric-owner",
            "--one-file-system", "--xattrs",
            *(f"--xattrs-include={pattern}" for pattern in _XATTRS),
            "--warning=no-file-ignored",  # sockets are skipped, as images cannot hold them
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime,"
            "delete=mtime",
            f"--checkpoint={CHECKPOINT_RECORDS}",
            "--checkpoint-action=echo=machined-checkpoint %{w}T",
            "-C", staging, "metadata.yaml", "-C", container]
    return argv + (["templates", "rootfs"] if templates else ["rootfs"])


def compressor_argv(algorithm: str) -> list[str] | None:
    """The program compressing stdin to stdout, or None for an uncompressed tarball.
    xz and zstd use every core (tar and the hashing writer need little CPU)."""
    return {
        "bzip2": ["bzip2", "-c"],
        "gzip": ["gzip", "-c", "-n"],
        "lz4": ["lz4", "-c", "-q"],
        "lzma": ["xz", "--format=lzma", "-c"],
        "xz": ["xz", "-c", "-T0"],
        "zstd": ["zstd", "-c", "-q", "-T0"],
        "none": None,
    }[check_compression(algorithm)]


def tool_env(path: str) -> dict[str, str]:
    """A clean environment: TAR_OPTIONS, GZIP, XZ_OPT, ZSTD_CLEVEL and friends in the
    daemon's environment must not change what gets packed."""
    return {"PATH": path, "LC_ALL": "C"}


def checkpoint_bytes(line: str) -> int | None:
    """Bytes tar has written so far, from one of its checkpoint lines (None for others)."""
    match = _CHECKPOINT.match(line)
    return None if match is None else int(match.group(1))


def tar_size_estimate(sizes: Iterable[int]) -> int:
    """What tar will write for entries of these sizes: a header block each, the data
    rounded up to blocks (an estimate: pax headers and hard links differ a little)."""
    return sum(512 + (size + 511) // 512 * 512 for size in sizes)


def progress_text(done: int, total: int, elapsed: float) -> str:
    """`Image pack: 45% (12.3 MB/s)`, or the amount so far when the total is not known."""
    rate = done / elapsed / 1e6 if elapsed > 0 else 0.0
    if total > 0:
        percent = min(99, done * 100 // total)  # an estimate: never 100% before the end
        return f"Image pack: {percent}% ({rate:.1f} MB/s)"
    return f"Image pack: {done / 1e6:.1f} MB ({rate:.1f} MB/s)"


def tar_error(stderr_lines: list[str]) -> str:
    """The sentence to show for a failed tar: its last real message (checkpoints dropped)."""
    errors = [line.strip() for line in stderr_lines
              if line.strip() and checkpoint_bytes(line) is None]
    if not errors:
        return "no error output"
    last = errors[-1]
    return last if len(last) <= 300 else last[:300] + "..."

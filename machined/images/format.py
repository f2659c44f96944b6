"""The LXD image format, pure: metadata.yaml parsing and validation, architecture names,
fingerprints and archive-kind detection. No subprocesses; the only I/O is reading files that
callers name (fingerprints, magic bytes, metadata.yaml)."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

METADATA_MAX_BYTES = 1024 * 1024
TEMPLATE_TRIGGERS = ("create", "copy", "start", "rename")
_CHUNK = 1024 * 1024

# Kernel name (what metadata.yaml carries) -> Debian name (what dpkg/debootstrap speak).
_KERNEL_TO_DEBIAN = {
    "x86_64": "amd64",
    "i686": "i386",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "armv6l": "armel",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips64": "mips64el",
}
_ALIASES = {"x86-64": "x86_64", "amd64": "x86_64", "i386": "i686", "i586": "i686",
            "arm64": "aarch64", "armhf": "armv7l", "armel": "armv6l", "ppc64el": "ppc64le",
            "loong64": "loongarch64", "mips64el": "mips64"}


class ImageFormatError(ValueError):
    """An image file or its metadata is not acceptable; the message is one sentence."""


# ---------------------------------------------------------------------------- architectures

def kernel_arch(name: str) -> str:
    """The kernel-style name (x86_64) for a kernel or Debian architecture name."""
    if name in _KERNEL_TO_DEBIAN:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    accepted = ", ".join(sorted(_KERNEL_TO_DEBIAN))
    raise ImageFormatError(f"Unknown architecture {name!r}; accepted are {accepted} "
                           "(or their Debian names)")


def debian_arch(name: str) -> str:
    """The Debian name (amd64) for a kernel or Debian architecture name."""
    return _KERNEL_TO_DEBIAN[kernel_arch(name)]


def host_arch() -> str:
    """The kernel-style architecture of this machine."""
    return kernel_arch(platform.machine())


# ---------------------------------------------------------------------------- metadata.yaml

@dataclass(frozen=True)
class TemplateRule:
    """One `templates:` entry: the file in templates/ rendered to `path` on `when` triggers."""
    path: str
    when: tuple[str, ...]
    template: str
    properties: Mapping[str, str] = field(default_factory=dict)
    create_only: bool = False
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"when": list(self.when), "template": self.template}
        if self.properties:
            out["properties"] = dict(self.properties)
        if self.create_only:
            out["create_only"] = True
        for key in ("uid", "gid"):
            if getattr(self, key) is not None:
                out[key] = str(getattr(self, key))
        if self.mode is not None:
            out["mode"] = f"{self.mode:o}"
        return out


@dataclass(frozen=True)
class ImageMetadata:
    architecture: str
    creation_date: int
    expiry_date: int | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    templates: Mapping[str, TemplateRule] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture,
                               "creation_date": self.creation_date}
        if self.expiry_date is not None:
            out["expiry_date"] = self.expiry_date
        out["properties"] = dict(self.properties)
        if self.templates:
            out["templates"] = {p: t.to_dict() for p, t in self.templates.items()}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), default_flow_style=False, sort_keys=False)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 integers: `mode: 0755` stays the text "0755" (read as octal
    below, as LXD's Go YAML does) instead of becoming the YAML 1.1 octal number 493."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*))$"),
                              list("-+0123456789"))


def load_yaml(data: bytes | str) -> Any:
    """Safe YAML with YAML 1.2 integers (also used for build recipes)."""
    return yaml.load(data, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_metadata(data: bytes | str) -> ImageMetadata:
    """Validate metadata.yaml text. Unknown top-level keys are ignored, as LXD does."""
    if len(data) > METADATA_MAX_BYTES:
        raise ImageFormatError(f"metadata.yaml is larger than the {METADATA_MAX_BYTES} bytes "
                               "accepted")
    try:
        doc = load_yaml(data)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ImageFormatError(f"metadata.yaml is not valid YAML{line}") from None
    if not isinstance(doc, dict):
        raise ImageFormatError("metadata.yaml must be a mapping with at least architecture "
                               "and creation_date")
    for key in ("architecture", "creation_date"):
        if key not in doc:
            raise ImageFormatError(f"metadata.yaml lacks the mandatory key {key!r}")
    arch = doc["architecture"]
    if not isinstance(arch, str):
        raise ImageFormatError("metadata.yaml architecture must be a string such as 'x86_64'")
    expiry = doc.get("expiry_date")
    return ImageMetadata(
        architecture=kernel_arch(arch),
        creation_date=_timestamp(doc["creation_date"], "creation_date"),
        expiry_date=None if expiry is None else _timestamp(expiry, "expiry_date"),
        properties=_properties(doc.get("properties"), "metadata.yaml properties"),
        templates=_templates(doc.get("templates")))


def load_metadata(path: str | os.PathLike[str]) -> ImageMetadata:
    """Read and validate a metadata.yaml file (regular file, size-capped)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageFormatError("metadata.yaml must be a regular file")
        data = fh.read(METADATA_MAX_BYTES + 1)
    return parse_metadata(data)


def _timestamp(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImageFormatError(f"metadata.yaml {key} must be a non-negative integer (unix "
                               f"seconds), not {value!r}")
    return value


def _properties(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImageFormatError(f"{where} must be a mapping of names to strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ImageFormatError(f"{where} has a non-string key {k!r}")
        if isinstance(v, bool):
            v = "true" if v else "false"
        if isinstance(v, int | float):
            v = str(v)
        if not isinstance(v, str):
            raise ImageFormatError(f"{where} {k!r} must be a string, not {type(v).__name__}")
        out[k] = v
    return out


def _templates(value: object) -> dict[str, TemplateRule]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImageFormatError("metadata.yaml templates must be a mapping of paths to rules")
    return {_target_path(k): _template_rule(k, v) for k, v in value.items()}


def _target_path(path: object) -> str:
    if (not isinstance(path, str) or not path.startswith("/") or "\0" in path
            or ".." in path.split("/")):
        raise ImageFormatError(f"Template target {path!r} must be an absolute path without "
                               "'..' components")
    return path


def _template_rule(path: str, rule: object) -> TemplateRule:
    where = f"Template {path!r}"
    if not isinstance(rule, dict):
        raise ImageFormatError(f"{where} must be a mapping with when and template")
    when = rule.get("when")
    if (not isinstance(when, list) or not when
            or not all(isinstance(w, str) and w in TEMPLATE_TRIGGERS for w in when)):
        raise ImageFormatError(f"{where} when must be a non-empty list of "
                               f"{', '.join(TEMPLATE_TRIGGERS)}")
    name = rule.get("template")
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name
            or "\0" in name):
        raise ImageFormatError(f"{where} template must be a file name inside templates/, "
                               f"not {name!r}")
    create_only = rule.get("create_only", False)
    if not isinstance(create_only, bool):
        raise ImageFormatError(f"{where} create_only must be true or false")
    return TemplateRule(
        path=path, when=tuple(when), template=name,
        properties=_properties(rule.get("properties"), f"{where} properties"),
        create_only=create_only, uid=_owner(rule.get("uid"), where, "uid"),
        gid=_owner(rule.get("gid"), where, "gid"), mode=parse_mode(rule.get("mode"), where))


def _owner(value: object, where: str, key: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ImageFormatError(f"{where} {key} must be a non-negative number, not {value!r}")


def parse_mode(value: object, where: str) -> int | None:
    """LXD reads mode as octal digits: 755 and "0755" both mean 0o755."""
    if value is None or value == "":
        return None
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(text, str) and re.fullmatch(r"0?[0-7]{1,4}", text):
        return int(text, 8)
    raise ImageFormatError(f"{where} mode must be octal digits such as 644 or 0755, "
                           f"not {value!r}")


# ---------------------------------------------------------------------------- fingerprints

def _hash_into(digest: Any, path: str | os.PathLike[str]) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)


def fingerprint_file(path: str | os.PathLike[str]) -> str:
    """Fingerprint of a unified image: sha256 of the tarball."""
    digest = hashlib.sha256()
    _hash_into(digest, path)
    return digest.hexdigest()


def fingerprint_split(meta: str | os.PathLike[str], rootfs: str | os.PathLike[str]) -> str:
    """Fingerprint of a split image: sha256 of the metadata bytes then the rootfs bytes."""
    digest = hashlib.sha256()
    _hash_into(digest, meta)
    _hash_into(digest, rootfs)
    return digest.hexdigest()


def is_fingerprint(text: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{64}", text) is not None


# ---------------------------------------------------------------------------- archive kinds

class ArchiveKind(StrEnum):
    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    TAR = "tar"
    SQUASHFS = "squashfs"
    LZ4 = "lz4"
    LZMA = "lzma"

    @property
    def is_tar(self) -> bool:
        """Everything but squashfs is (assumed to hold) a tar stream."""
        return self is not ArchiveKind.SQUASHFS


_MAGICS = ((b"\x1f\x8b", ArchiveKind.GZIP), (b"\xfd7zXZ\x00", ArchiveKind.XZ),
           (b"\x28\xb5\x2f\xfd", ArchiveKind.ZSTD), (b"BZh", ArchiveKind.BZIP2),
           (b"hsqs", ArchiveKind.SQUASHFS), (b"\x04\x22\x4d\x18", ArchiveKind.LZ4),
           (b"\x02\x21\x4c\x18", ArchiveKind.LZ4))  # lz4 frame, lz4 legacy
MAGIC_BYTES = 512


def detect_kind(head: bytes) -> ArchiveKind:
    """The format of an image file from its first MAGIC_BYTES bytes."""
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    if head[257:262] == b"ustar":
        return ArchiveKind.TAR
    if head.startswith(b"\x5d\x00\x00"):  # lzma-alone has no magic: checked after tar
        return ArchiveKind.LZMA
    accepted = ", ".join(k.value for k in ArchiveKind)
    raise ImageFormatError(f"Unrecognised image file format; accepted are {accepted}")


def detect_file(path: str | os.PathLike[str]) -> ArchiveKind:
    with open(path, "rb") as fh:
        return detect_kind(fh.read(MAGIC_BYTES))

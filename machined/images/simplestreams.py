"""Simplestreams, pure: read an image server's `streams/v1` documents into images and
resolve aliases as LXD does (LXD-BEHAVIOUR.md §4), and write such documents for a tree of our
own (`mc simplestreams`). Stdlib only and no I/O: the daemon and `mc` both use it, callers
fetch and store the JSON.

Everything in a stream is untrusted input. Structural nonsense (a products file that is not
an object, an item whose size is a string) raises StreamError naming where; an image LXD would
skip (unknown architecture, unparseable serial, no usable fingerprint) is skipped; an image
whose fingerprint or file hashes are not 64 hex characters, or whose file paths could leave
the server's tree (absolute, `..`, a scheme), is skipped too, because nothing could verify it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

IMAGE_TYPES = ("container", "virtual-machine")
META_FTYPES = ("lxd.tar.xz", "incus.tar.xz")
UNIFIED_FTYPES = ("lxd_combined.tar.gz", "incus_combined.tar.gz")
# root ftype -> (fingerprint fields on the meta item, first non-empty wins; image type)
ROOT_FTYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "squashfs": (("combined_squashfs_sha256",), "container"),
    "root.tar.xz": (("combined_rootxz_sha256", "combined_sha256"), "container"),
    "disk-kvm.img": (("combined_disk-kvm-img_sha256",), "virtual-machine"),
    "disk1.img": (("combined_disk1-img_sha256",), "virtual-machine"),
    "uefi1.img": (("combined_uefi1-img_sha256",), "virtual-machine"),
}
# §4.3: preferred root first. A unified image ranks with squashfs (LXD scores unknown types 0).
_ROOT_PREFERENCE = ("squashfs", "root.tar.xz", "disk-kvm.img", "uefi1.img", "disk1.img")

# Debian names (what products carry) -> kernel names (what machined and metadata.yaml speak).
DEBIAN_TO_KERNEL = {
    "amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l", "i386": "i686",
    "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}
KERNEL_TO_DEBIAN = {kernel: debian for debian, kernel in DEBIAN_TO_KERNEL.items()}
# 32-bit personalities a 64-bit host runs natively (LXD osarch.ArchitecturePersonalities).
PERSONALITIES = {"x86_64": ("i686",), "aarch64": ("armv7l",)}

PRODUCTS_PATH = "streams/v1/images.json"
INDEX_PATH = "streams/v1/index.json"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SERIAL = re.compile(r"(\d{4})(\d{2})(\d{2})(.*)", re.DOTALL)
_SERIAL_TIME = re.compile(r"_?(\d{2}):?(\d{2})")
_PATH_PART = re.compile(r"[A-Za-z0-9._+~@:-]+")  # no space, '%', '?', '#', '\\' or controls
_DIR_PART = re.compile(r"[A-Za-z0-9._+~-]+")


class StreamError(ValueError):
    """A malformed index or products document; the message says what and where."""


class NoSuchImage(LookupError):
    """No image answers to a name; the message is meant for users."""


@dataclasses.dataclass(frozen=True)
class StreamFile:
    role: str  # "meta" | "rootfs" | "unified"
    path: str  # relative to the server's base URL
    sha256: str
    size: int
    ftype: str


@dataclasses.dataclass(frozen=True)
class StreamImage:
    fingerprint: str
    type: str  # "container" | "virtual-machine"
    architecture: str  # kernel style: x86_64, aarch64, ...
    os: str
    release: str
    variant: str
    serial: str
    product: str
    created_at: str  # ISO 8601 UTC "...Z", from the serial
    expires_at: str  # "" or ISO 8601 UTC, from the product's support_eol
    # parse_products: the product's declared aliases; Catalog: the names (alias and
    # alias/<debian arch>) that resolve to this image on its host
    aliases: tuple[str, ...]
    properties: dict[str, str] = dataclasses.field(hash=False)
    files: tuple[StreamFile, ...]  # meta then rootfs, or one unified
    size: int


def valid_fingerprint(fp: str) -> bool:
    """A full image fingerprint: 64 lowercase hex characters."""
    return isinstance(fp, str) and _HEX64.fullmatch(fp) is not None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- reading

def index_paths(index: Any) -> list[str]:
    """Products-file paths in an index.json: entries with `datatype: image-downloads` and a
    non-empty `products` list only (as LXD), each once, in document order."""
    if not isinstance(index, dict) or not isinstance(index.get("index"), dict):
        raise StreamError("index.json: expected an object with an 'index' object")
    paths: list[str] = []
    for name, entry in index["index"].items():
        where = f"index.json: index[{name!r}]"
        if not isinstance(entry, dict):
            raise StreamError(f"{where}: expected an object")
        products = entry.get("products")
        if entry.get("datatype") != "image-downloads" or not products:
            continue
        if not isinstance(products, list):
            raise StreamError(f"{where}.products: expected a list")
        path = entry.get("path")
        if not isinstance(path, str) or not safe_path(path):
            raise StreamError(f"{where}.path: expected a relative path inside the server, "
                              f"got {path!r}")
        if path not in paths:
            paths.append(path)
    return paths


def safe_path(path: str) -> bool:
    """True for a relative path that stays inside the server's tree when joined to its base
    URL: no leading '/', no empty, '.' or '..' segment, no scheme (a ':' in the first
    segment would make it an absolute URL), nothing that URL syntax would reinterpret."""
    parts = path.split("/")
    return (bool(path) and ":" not in parts[0]
            and all(_PATH_PART.fullmatch(p) and p not in (".", "..") for p in parts))


def parse_serial(serial: str) -> datetime | None:
    """The creation time a version name (serial) stands for, or None (LXD skips those).
    `YYYYMMDD` must open it; a following `_hhmm`, `_hh:mm` or `hhmm` adds the time
    (images.linuxcontainers.org uses `20200304_22:10`, incus-simplestreams `202511172324`);
    anything else after the date counts as midnight, as LXD's fallback does."""
    m = _SERIAL.fullmatch(serial)
    if m is None:
        return None
    try:
        day = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
    except ValueError:
        return None
    t = _SERIAL_TIME.fullmatch(m[4])
    if t and int(t[1]) < 24 and int(t[2]) < 60:
        return day + timedelta(hours=int(t[1]), minutes=int(t[2]))
    return day


def parse_products(products: Any) -> list[StreamImage]:
    """Every image (containers and VMs) in a products document, in document order, without
    aliases (Catalog assigns them). See the module docstring for what is skipped."""
    if not isinstance(products, dict):
        raise StreamError("products: expected a JSON object")
    table = products.get("products")
    if not isinstance(table, dict):
        raise StreamError("products: expected a 'products' object")
    images: list[StreamImage] = []
    for name, product in table.items():
        images.extend(_product_images(name, product))
    return images


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StreamError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StreamError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _product_images(name: str, product: Any) -> list[StreamImage]:
    where = f"products[{name!r}]"
    product = _object(product, where)
    fields = {k: _string(product, k, where)
              for k in ("aliases", "arch", "os", "release", "release_title", "variant",
                        "version", "support_eol")}
    requirements = {}
    for key in ("requirements", "lxd_requirements"):
        extra = _object(product.get(key) or {}, f"{where}.{key}")
        requirements |= {k: _string(extra, k, f"{where}.{key}") for k in extra}
    versions = _object(product.get("versions") or {}, f"{where}.versions")
    architecture = DEBIAN_TO_KERNEL.get(fields["arch"]) or (
        fields["arch"] if fields["arch"] in KERNEL_TO_DEBIAN else None)
    images: list[StreamImage] = []
    for serial, version in versions.items():
        vwhere = f"{where}.versions[{serial!r}]"
        version = _object(version, vwhere)
        label = _string(version, "label", vwhere)
        items = {key: _item(item, f"{vwhere}.items[{key!r}]")
                 for key, item in _object(version.get("items") or {}, f"{vwhere}.items").items()}
        created = parse_serial(serial)
        if architecture is None or created is None:
            continue  # LXD skips unknown architectures and unparseable serials
        for fingerprint, image_type, root_type, files in _version_images(items):
            if not valid_fingerprint(fingerprint) or not all(
                    valid_fingerprint(f.sha256) and safe_path(f.path) for f in files):
                continue
            properties = _properties(fields, requirements, label, serial, root_type)
            images.append(StreamImage(
                fingerprint=fingerprint, type=image_type, architecture=architecture,
                os=fields["os"], release=fields["release"], variant=fields["variant"],
                serial=serial, product=name, created_at=iso(created),
                expires_at=_eol(fields["support_eol"]), properties=properties,
                aliases=tuple(a.strip() for a in fields["aliases"].split(",") if a.strip()),
                files=tuple(files), size=sum(f.size for f in files)))
    return images


def _item(item: Any, where: str) -> dict[str, Any]:
    item = _object(item, where)
    for key, value in item.items():
        if key == "size":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise StreamError(f"{where}.size: expected a non-negative integer, "
                                  f"got {value!r}")
        elif key in ("ftype", "path", "sha256", "combined_type") or key.startswith("combined_"):
            _string(item, key, where)
    return item


def _file(role: str, item: dict[str, Any]) -> StreamFile:
    return StreamFile(role=role, path=item.get("path") or "", sha256=item.get("sha256") or "",
                      size=item.get("size") or 0, ftype=item.get("ftype") or "")


def _version_images(items: dict[str, dict[str, Any]]
                    ) -> list[tuple[str, str, str, list[StreamFile]]]:
    """(fingerprint, type, root type, files) for each image in one version: each unified
    item, and each meta item paired with each root item."""
    found = []
    for meta in items.values():
        ftype = meta.get("ftype")
        if ftype in UNIFIED_FTYPES:
            kind = "virtual-machine" if meta.get("combined_type") == "virtual-machine" \
                else "container"
            found.append((meta.get("sha256") or "", kind, "tar.gz", [_file("unified", meta)]))
        elif ftype in META_FTYPES:
            for root in items.values():
                if root.get("ftype") not in ROOT_FTYPES:
                    continue
                keys, kind = ROOT_FTYPES[root["ftype"]]
                fingerprint = next((meta[k] for k in keys if meta.get(k)), "")
                found.append((fingerprint, kind, root["ftype"],
                              [_file("meta", meta), _file("rootfs", root)]))
    return found


def _properties(fields: dict[str, str], requirements: dict[str, str], label: str,
                serial: str, root_type: str) -> dict[str, str]:
    """Image properties as LXD derives them (§4.2); empty values dropped."""
    description = f"{fields['os']} {fields['release_title']} {fields['arch']}"
    if fields["variant"] not in ("", "default"):
        description += f" ({fields['variant']})"
    if label:
        description += f" ({label})"
    description += f" ({serial})"
    props = {"os": fields["os"], "release": fields["release"], "version": fields["version"],
             "architecture": fields["arch"], "label": label, "serial": serial,
             "description": description, "variant": fields["variant"], "type": root_type}
    props |= {f"requirements.{k}": v for k, v in requirements.items()}
    return {k: v for k, v in props.items() if v}


def _eol(text: str) -> str:
    try:
        return iso(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)) if text else ""
    except ValueError:
        return ""


# ---------------------------------------------------------------------------- aliases

def _compare(a: StreamImage, b: StreamImage) -> int:
    """§4.3 order: os, release, variant ascending (empty last), serial descending, Debian
    architecture ascending, then the preferred root type."""
    for key in ("os", "release", "variant", "serial", "architecture"):
        x, y = a.properties.get(key, ""), b.properties.get(key, "")
        if x == y:
            continue
        if not x or not y:
            return 1 if not x else -1
        if key == "serial":
            return -1 if x > y else 1
        return -1 if x < y else 1
    return _root_rank(a) - _root_rank(b)


def _root_rank(image: StreamImage) -> int:
    kind = image.properties.get("type", "")
    return _ROOT_PREFERENCE.index(kind) if kind in _ROOT_PREFERENCE else 0


class Catalog:
    """The images of one server, sorted and with LXD's alias table, for one host
    architecture. Each (alias, type, architecture) belongs to the first image that claims
    it in §4.3 order: the newest serial, the preferred root type."""

    def __init__(self, images: list[StreamImage], host_arch: str) -> None:
        self.host_arch = host_arch
        ordered = sorted(images, key=functools.cmp_to_key(_compare))
        unique: dict[str, StreamImage] = {}
        for image in ordered:
            unique.setdefault(image.fingerprint, image)
        self._images = list(unique.values())
        # name -> [(type, architecture, fingerprint)], registration order
        self._claims: dict[str, list[tuple[str, str, str]]] = {}
        for image in self._images:
            for alias in image.aliases:
                self._claim(alias, image)
                self._claim(f"{alias}/{image.properties['architecture']}", image)
        won = self._won()
        self._images = [_with_aliases(i, won.get(i.fingerprint, [])) for i in self._images]
        self._by_fp = {i.fingerprint: i for i in self._images}

    def _claim(self, name: str, image: StreamImage) -> None:
        claims = self._claims.setdefault(name, [])
        if not any(t == image.type and a == image.architecture for t, a, _ in claims):
            claims.append((image.type, image.architecture, image.fingerprint))

    def _rank(self, architecture: str) -> int:
        if architecture == self.host_arch:
            return 0
        return 1 if architecture in PERSONALITIES.get(self.host_arch, ()) else 2

    def _lookup(self, name: str, image_type: str) -> str | None:
        claims = sorted(self._claims.get(name, []), key=lambda c: self._rank(c[1]))
        return next((fp for t, _, fp in claims if t == image_type), None)

    def _won(self) -> dict[str, list[str]]:
        won: dict[str, list[str]] = {}
        for name in self._claims:
            for image_type in IMAGE_TYPES:
                fp = self._lookup(name, image_type)
                if fp is not None:
                    won.setdefault(fp, []).append(name)
        return won

    def list(self, image_type: str = "container") -> list[StreamImage]:
        """Images of one type, in §4.3 order."""
        _check_type(image_type)
        return [i for i in self._images if i.type == image_type]

    def aliases(self) -> dict[str, str]:
        """alias -> fingerprint of the container image it resolves to on this host."""
        table = {name: self._lookup(name, "container") for name in sorted(self._claims)}
        return {name: fp for name, fp in table.items() if fp is not None}

    def resolve(self, name: str, image_type: str = "container") -> StreamImage:
        """The image an alias (host architecture first, then its personalities, then any
        other), an `alias/<arch>` or a unique fingerprint prefix names."""
        _check_type(image_type)
        other = IMAGE_TYPES[1 - IMAGE_TYPES.index(image_type)]
        fp = self._lookup(name, image_type)
        if fp is not None:
            return self._by_fp[fp]
        if self._lookup(name, other) is not None:
            raise _wrong_type(name, image_type, other)
        return self._by_prefix(name, image_type, other)

    def _by_prefix(self, name: str, image_type: str, other: str) -> StreamImage:
        prefix = name.lower()
        matches = [i for i in self._images if prefix and i.fingerprint.startswith(prefix)] \
            if re.fullmatch(r"[0-9a-f]+", prefix) else []
        if not matches:
            raise NoSuchImage(f"Image {name!r} not found: no alias or fingerprint on the "
                              "server matches it")
        if len(matches) > 1:
            shown = ", ".join(m.fingerprint[:12] for m in matches[:5])
            raise NoSuchImage(f"Fingerprint prefix {name!r} is ambiguous: it matches "
                              f"{len(matches)} images ({shown}); give more characters")
        if matches[0].type != image_type:
            raise _wrong_type(name, image_type, other)
        return matches[0]


def _with_aliases(image: StreamImage, names: list[str]) -> StreamImage:
    return dataclasses.replace(image, aliases=tuple(names))


def _wrong_type(name: str, wanted: str, found: str) -> NoSuchImage:
    return NoSuchImage(f"The requested image {name!r} couldn't be found for instance type "
                       f"\"{wanted}\", but one was found for instance type \"{found}\"")


def _check_type(image_type: str) -> None:
    if image_type not in IMAGE_TYPES:
        raise ValueError(f"Unknown image type {image_type!r}; accepted are "
                         f"{', '.join(IMAGE_TYPES)}")


# ---------------------------------------------------------------------------- writing

def empty_products() -> dict[str, Any]:
    return {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
            "products": {}}


def serial_for(created_at: str) -> str:
    """The version name for an image created at `created_at` (ISO 8601): `YYYYMMDD_hhmm`
    in UTC, LXD's own long serial layout, so it sorts by time and every client parses it."""
    return _serial(_parse_time(created_at))


def _serial(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d_%H%M")


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise StreamError(f"created_at: expected an ISO 8601 time, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def dir_part(value: str, what: str) -> str:
    """`value` as one directory name in a tree we write (`images/<os>/<release>/...`)."""
    if not _DIR_PART.fullmatch(value) or value in (".", ".."):
        raise StreamError(f"Image {what} {value!r} cannot name a directory: use letters, "
                          "digits and . _ + ~ - only")
    return value


def product_name(properties: dict[str, str], architecture: str) -> str:
    """`os:release:arch:variant` (Debian arch), as images.linuxcontainers.org names them."""
    os_, release, variant = _identity(properties)
    return f"{os_}:{release}:{_debian(architecture)}:{variant}"


def version_dir(properties: dict[str, str], architecture: str, serial: str) -> str:
    """Where a version's files live in our trees: images/<os>/<release>/<arch>/<variant>/
    <serial> (lower-case os, Debian arch), every part checked to be a plain name."""
    os_, release, variant = _identity(properties)
    parts = [os_.lower(), release, _debian(architecture), variant, serial]
    names = ("os", "release", "architecture", "variant", "serial")
    return "/".join(["images", *(dir_part(p, w) for p, w in zip(parts, names, strict=True))])


def _identity(properties: dict[str, str]) -> tuple[str, str, str]:
    os_, release = properties.get("os", ""), properties.get("release", "")
    if not os_ or not release:
        missing = " and ".join(k for k in ("os", "release") if not properties.get(k))
        raise StreamError(f"The image has no {missing} property; a stream names images by "
                          "os, release and variant (set them with `mc image edit`)")
    return os_, release, properties.get("variant") or "default"


def _debian(architecture: str) -> str:
    if architecture in KERNEL_TO_DEBIAN:
        return KERNEL_TO_DEBIAN[architecture]
    if architecture in DEBIAN_TO_KERNEL:
        return architecture
    raise StreamError(f"Architecture {architecture!r} cannot be published; accepted are "
                      f"{', '.join(sorted(KERNEL_TO_DEBIAN))}")


def default_aliases(properties: dict[str, str]) -> list[str]:
    """`os/release/variant` (lower-case os), and `os/release` for the default variant."""
    os_, release, variant = _identity(properties)
    names = [f"{os_.lower()}/{release}/{variant}"]
    return names + [f"{os_.lower()}/{release}"] if variant == "default" else names


def check_aliases(aliases: list[str]) -> list[str]:
    """Aliases as a product can carry them (one comma-separated string)."""
    for alias in aliases:
        if "," in alias or alias.strip() != alias or not alias:
            raise StreamError(f"Alias {alias!r} cannot be published: it must be non-empty, "
                              "without commas or surrounding spaces")
    return aliases


def has_image(products: dict[str, Any], fingerprint: str) -> bool:
    return any(i.fingerprint == fingerprint for i in parse_products(products))


def add_image(products: dict[str, Any], *, fingerprint: str, properties: dict[str, str],
              architecture: str, created_at: str, aliases: list[str],
              files: list[StreamFile], image_type: str = "container") -> dict[str, Any]:
    """A copy of `products` with the image added as a new version of its product
    (`product_name`), under `serial_for(created_at)` or, if the product has that version
    already, the next free minute (`pick_serial`). `files` are one unified file (its
    sha256 must be the fingerprint) or meta then rootfs (the fingerprint is their combined
    hash). An image already in the document leaves it unchanged. The product's aliases
    are its existing ones plus `default_aliases` plus `aliases`."""
    doc = copy.deepcopy(products) if products else empty_products()
    if not isinstance(doc.get("products"), dict):
        raise StreamError("products: expected a 'products' object")
    if not valid_fingerprint(fingerprint):
        raise StreamError(f"Fingerprint {fingerprint!r} is not 64 lowercase hex characters")
    _check_type(image_type)
    if has_image(doc, fingerprint):
        return doc
    items = _items_for(fingerprint, files, image_type)
    serial = pick_serial(doc, properties, architecture, created_at)
    name = product_name(properties, architecture)
    os_, release, variant = _identity(properties)
    product = doc["products"].setdefault(name, {
        "aliases": "", "arch": _debian(architecture), "os": os_, "release": release,
        "release_title": properties.get("release_title") or release, "variant": variant,
        "versions": {}})
    names = [a for a in product.get("aliases", "").split(",") if a]
    for alias in check_aliases(default_aliases(properties) + list(aliases)):
        if alias not in names:
            names.append(alias)
    product["aliases"] = ",".join(names)
    product["versions"][serial] = {"items": items}
    return doc


def pick_serial(products: dict[str, Any], properties: dict[str, str], architecture: str,
                created_at: str) -> str:
    """The version name add_image gives an image: `serial_for(created_at)`, a minute later
    for each clash with a version already in its product (so it still sorts and parses).
    Call it first to know where the files go (`version_dir`)."""
    table = (products or {}).get("products")
    product = table.get(product_name(properties, architecture)) if isinstance(table, dict) \
        else None
    taken = product.get("versions") or {} if isinstance(product, dict) else {}
    moment = _parse_time(created_at)
    while _serial(moment) in taken:
        moment += timedelta(minutes=1)
    return _serial(moment)


def _items_for(fingerprint: str, files: list[StreamFile], image_type: str
               ) -> dict[str, dict[str, Any]]:
    for f in files:
        if not valid_fingerprint(f.sha256) or not safe_path(f.path) or f.size < 0:
            raise StreamError(f"File {f.path!r}: needs a relative path, a 64-hex sha256 "
                              "and a size")
    roles = [f.role for f in files]
    if roles == ["unified"] and files[0].ftype in UNIFIED_FTYPES:
        if files[0].sha256 != fingerprint:
            raise StreamError("A unified image's fingerprint is its file's sha256; "
                              f"{files[0].sha256} != {fingerprint}")
        item = _entry(files[0])
        if image_type == "virtual-machine":
            item["combined_type"] = "virtual-machine"
        return {_key(files[0]): item}
    if roles == ["meta", "rootfs"] and files[0].ftype in META_FTYPES \
            and files[1].ftype in ("squashfs", "root.tar.xz") and image_type == "container":
        meta = _entry(files[0])
        for key in ROOT_FTYPES[files[1].ftype][0]:
            meta[key] = fingerprint
        return {_key(files[0]): meta, _key(files[1]): _entry(files[1])}
    raise StreamError(f"Cannot publish files {[(f.role, f.ftype) for f in files]}: expected "
                      f"one unified {'/'.join(UNIFIED_FTYPES)} or a {'/'.join(META_FTYPES)} "
                      "meta file then a squashfs or root.tar.xz rootfs")


def _entry(f: StreamFile) -> dict[str, Any]:
    return {"ftype": f.ftype, "path": f.path, "sha256": f.sha256, "size": f.size}


def _key(f: StreamFile) -> str:
    return f.path.rsplit("/", 1)[-1]


def remove_image(products: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """A copy of `products` without the image: its root item (and the meta's combined hash
    for it), the meta item once no root is left, the version once empty, the product once
    it has no version. NoSuchImage if no image has that fingerprint."""
    doc = copy.deepcopy(products)
    matches = [i for i in parse_products(doc) if i.fingerprint == fingerprint]
    if not matches:
        raise NoSuchImage(f"Image {fingerprint!r} is not in this stream")
    for image in matches:
        product = doc["products"][image.product]
        items = product["versions"][image.serial]["items"]
        doomed = {f.path for f in image.files if f.role != "meta"}
        for key in [k for k, v in items.items() if v.get("path") in doomed]:
            del items[key]
        for meta in (v for v in items.values() if v.get("ftype") in META_FTYPES):
            for key in [k for k, v in meta.items()
                        if k.startswith("combined_") and v == fingerprint]:
                del meta[key]
        if not any(v.get("ftype") in ROOT_FTYPES or v.get("ftype") in UNIFIED_FTYPES
                   for v in items.values()):
            del product["versions"][image.serial]
        if not product["versions"]:
            del doc["products"][image.product]
    return doc


def make_index(products: dict[str, Any]) -> dict[str, Any]:
    """The index.json for a tree whose only products file is `streams/v1/images.json`."""
    names = sorted(products.get("products", {}))
    return {"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "path": PRODUCTS_PATH, "format": "products:1.0",
        "products": names}}}

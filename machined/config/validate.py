"""Validator combinators (pure). A validator takes the raw string and returns None or raises
ValueError with a short phrase saying what is accepted."""

from __future__ import annotations

import re
from collections.abc import Callable

Validator = Callable[[str], None]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_UNITS = {
    "": 1, "B": 1,
    "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15, "EB": 10**18,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50, "EiB": 2**60,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKMGTPE]i?B|B)?$")


def parse_bool(value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("a boolean (true/false, yes/no, on/off, 1/0)")


def is_bool(value: str) -> None:
    parse_bool(value)


def is_int(value: str) -> None:
    try:
        int(value, 10)
    except ValueError:
        raise ValueError("an integer") from None


def is_uint(value: str) -> None:
    if not value.isdigit():
        raise ValueError("a non-negative integer")


def parse_size(value: str) -> int:
    """'512MiB' -> 536870912. Units as LXD: kB/MB/GB (powers of 10), KiB/MiB/GiB (powers of 2)."""
    match = _SIZE.match(value.strip())
    unit = match.group(2) if match else None
    if unit == "KB":
        unit = "kB"
    if not match or (unit or "") not in _UNITS:
        raise ValueError("a size such as 512MiB, 2GiB or 1000000 (bytes)")
    return int(float(match.group(1)) * _UNITS[unit or ""])


def is_size(value: str) -> None:
    parse_size(value)


def is_memory_limit(value: str) -> None:
    if value.endswith("%"):
        pct = value[:-1]
        if not pct.replace(".", "", 1).isdigit() or float(pct) <= 0 or float(pct) > 100:
            raise ValueError("a percentage between 0% (excluded) and 100%, or a size like 512MiB")
        return
    try:
        size = parse_size(value)
    except ValueError:
        raise ValueError("a size like 512MiB or 2GiB, or a percentage like 50%") from None
    if size == 0:
        raise ValueError("a non-zero size like 512MiB, or a percentage like 50%")


_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def is_cpu_limit(value: str) -> None:
    if value.isdigit():
        if int(value) == 0:
            raise ValueError("a CPU count of at least 1, or a CPU set like 0-3,7")
        return
    if not _CPUSET.match(value):
        raise ValueError("a CPU count like 2, or a CPU set like 0-3,7")


def one_of(*choices: str) -> Validator:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError("one of: " + ", ".join(choices))
    return check


def any_of(*validators: Validator) -> Validator:
    def check(value: str) -> None:
        errors = []
        for validator in validators:
            try:
                validator(value)
                return
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(" or ".join(errors))
    return check


def no_newline(value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError("a single line (no newline characters)")


def is_any(value: str) -> None:
    return None

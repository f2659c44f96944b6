"""Object syntax: [remote:]name, inst/snap, inst/path, key=value."""

from __future__ import annotations

import pytest

from cli.errors import CliError
from cli.params import (
    local_name,
    parse_key_value,
    parse_key_values,
    parse_remote,
    split_path,
    split_snapshot,
    url_part,
)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("c1", ("local", "c1")),
        ("local:c1", ("local", "c1")),
        ("local:", ("local", "")),
        ("local:c1:x", ("local", "c1:x")),  # split at the first ':'
        ("c1/snap:0", ("local", "c1/snap:0")),  # '/' in the prefix: a snapshot name with ':'
        ("debian/12", ("local", "debian/12")),
    ],
)
def test_parse_remote(arg: str, expected: tuple[str, str]) -> None:
    assert parse_remote(arg) == expected


def test_unknown_remote() -> None:
    with pytest.raises(CliError, match='^The remote "images" doesn\'t exist$'):
        parse_remote("images:debian/12")


def test_local_name_requires_a_name() -> None:
    assert local_name("local:c1") == "c1"
    with pytest.raises(CliError):
        local_name("local:")


def test_split_snapshot() -> None:
    assert split_snapshot("c1/snap0") == ("c1", "snap0")
    assert split_snapshot("c1") == ("c1", None)
    assert split_snapshot("c1/") == ("c1", "")


def test_split_path() -> None:
    assert split_path("c1/etc/hosts") == ("c1", "/etc/hosts")
    assert split_path("c1/") == ("c1", "/")
    with pytest.raises(CliError):
        split_path("c1")


def test_key_values() -> None:
    assert parse_key_value("a=b=c") == ("a", "b=c")
    assert parse_key_value("a=") == ("a", "")
    assert parse_key_value("A", allow_bare=True) == ("A", "")
    assert parse_key_values(["limits.cpu=2", "user.x=y"]) == {"limits.cpu": "2", "user.x": "y"}
    with pytest.raises(CliError):
        parse_key_value("novalue")
    with pytest.raises(CliError):
        parse_key_value("=v")


def test_url_part_escapes_slashes() -> None:
    assert url_part("debian/12") == "debian%2F12"
    assert url_part("c1") == "c1"

"""What an LXD user met trying the issue-4 commands (remotes, images across servers, trust),
found by using them: help listings, image info, alias names, and errors that say what was
wrong. No daemon: the commands here fail or print before they would reach one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.commands.image import format_image_info
from cli.main import cli
from cli.output import format_time, parse_time
from machined.images.pack import check_alias_name

GROUPS = [["image"], ["image", "alias"], ["remote"], ["config", "trust"], ["simplestreams"]]


def run(*argv: str):
    return CliRunner().invoke(cli, list(argv), prog_name="mc")


@pytest.fixture(autouse=True)
def conf_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "mc"
    monkeypatch.setenv("MC_CONF", str(directory))
    monkeypatch.setenv("MACHINED_DIR", str(tmp_path / "no-daemon"))
    return directory


@pytest.mark.parametrize("group", GROUPS, ids=" ".join)
def test_group_help_lists_whole_summaries(group):
    """`mc image --help` cut summaries ("Build an image from a recipe, import it and...")."""
    result = run(*group, "--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:\n", 1)[1].split("Aliases:", 1)[0]
    assert not [line for line in commands.splitlines() if line.endswith("...")]


@pytest.mark.parametrize("group,aliases", [
    (["image"], {"cp": "copy", "rm": "delete"}),
    (["image", "alias"], {"ls": "list", "mv": "rename", "rm": "delete"}),
])
def test_image_aliases_are_listed_as_aliases_and_work(group, aliases):
    """`cp`, `rm`, `ls`, `mv` were listed as commands of their own, each summary twice."""
    result = run(*group, "--help")
    commands, _, alias_section = result.output.partition("Aliases:\n")
    for alias, name in aliases.items():
        assert f"  {alias}  = {name}" in alias_section
        assert f"\n  {alias} " not in commands
        usage = run(*group, alias, "--help").output
        assert f"Usage: mc {' '.join(group)} {name} " in usage


# -- image info ----------------------------------------------------------------------------------
IMAGE = {
    "fingerprint": "ab" * 32, "size": 1 << 20, "architecture": "x86_64", "type": "container",
    "public": False, "properties": {"os": "busybox"}, "aliases": [], "cached": True,
    "auto_update": True, "created_at": "2026-01-01T00:00:00Z",
    "uploaded_at": "2026-01-02T00:00:00Z", "expires_at": "1970-01-01T00:00:00Z",
    "last_used_at": "1970-01-01T00:00:00Z", "profiles": ["default"],
}


def test_image_info_says_never_for_zero_times():
    """The daemon's zero time is the Unix epoch: it was shown as 1970/01/01 00:00 UTC."""
    info = format_image_info(IMAGE)
    assert "    Expires: never\n" in info and "    Last used: never\n" in info
    assert "1970" not in info
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert format_time("1970-01-01T00:00:00Z") == ""
    assert format_time("1970-01-02T00:00:00Z") != ""  # a real time is still shown


def test_image_info_shows_where_an_image_comes_from():
    """As lxc: a Source section with server, protocol and the alias auto-update follows."""
    source = {"server": "https://images.example.org", "protocol": "simplestreams",
              "alias": "debian/12", "certificate": "", "image_type": "container"}
    info = format_image_info({**IMAGE, "update_source": source})
    assert info.endswith("Auto update: enabled\nSource:\n    Server: https://images.example.org"
                         "\n    Protocol: simplestreams\n    Alias: debian/12\n"
                         "Profiles:\n    - default\n")
    by_fp = format_image_info({**IMAGE, "update_source": {**source, "alias": ""}})
    assert "    Alias: (none: fetched by fingerprint)\n" in by_fp
    assert "Source:" not in format_image_info(IMAGE)


# -- alias names ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a\nb", "tab\there", "bell\x07", "del\x7f"])
def test_alias_names_with_control_characters_are_refused(name):
    """`mc image alias create $'a\\nb' x` worked, and the alias could then not be deleted
    (no API route matches a newline): the daemon now refuses the name."""
    with pytest.raises(ValueError, match="control characters"):
        check_alias_name(name)


@pytest.mark.parametrize("name", ["debian/12", "bad name", "22.04", "ünïcode"])
def test_alias_names_lxd_accepts_still_work(name):
    assert check_alias_name(name) == name


# -- remote add ----------------------------------------------------------------------------------
def test_a_damaged_trust_token_is_called_one(conf_dir: Path):
    """A truncated or mistyped token was taken for a host name: "UnicodeError: encoding
    with 'idna' codec failed (label too long)"."""
    result = run("remote", "add", "lab2", "eyJjbGllbnRfbmFtZSI6InVyLWxhcHRvcCIsImZpbmdlcnB" * 2)
    assert result.exit_code == 1
    assert result.output == ("Error: This is not a trust token (expected the text printed by "
                             "mc config trust add on the server)\n")
    assert not (conf_dir / "config.yml").exists()


def test_http_for_a_machined_remote_names_the_flag(conf_dir: Path):
    result = run("remote", "add", "lab", "http://127.0.0.1:8000")
    assert result.exit_code == 1
    assert "(--protocol simplestreams)" in result.output
    assert not (conf_dir / "config.yml").exists()

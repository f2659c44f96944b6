"""`mc file` naming rules and argument parsing (cli/filepaths.py): pure, no daemon."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.errors import CliError
from cli.filepaths import (
    InstancePath,
    parents,
    parse_instance_path,
    parse_mode,
    plan_pull,
    plan_push,
    resolve_link,
    safe_entry_name,
    source_name,
)
from cli.main import cli


def ip(text: str) -> InstancePath:
    return parse_instance_path(text)


def test_instance_paths():
    assert ip("c1/etc/hosts") == InstancePath("local", "c1", "/etc/hosts", False)
    assert ip("local:c1/var/www/") == InstancePath("local", "c1", "/var/www", True)
    assert ip("c1/") == InstancePath("local", "c1", "/", False)
    assert ip("c1//a/../b") == InstancePath("local", "c1", "/b", False)
    assert str(ip("c1/etc/hosts")) == "c1/etc/hosts"
    with pytest.raises(CliError, match='expected <instance>/<path>'):
        ip("c1")
    with pytest.raises(CliError, match='expected <instance>/<path>'):
        ip("/etc/hosts")
    with pytest.raises(CliError, match='The remote "nope" doesn\'t exist'):
        ip("nope:c1/etc")


@pytest.mark.parametrize("text, mode", [("0644", 0o644), ("644", 0o644), ("755", 0o755),
                                        ("4755", 0o4755), ("0o600", 0o600), ("7", 0o7),
                                        ("01777", 0o1777)])
def test_modes(text, mode):
    assert parse_mode(text) == mode


@pytest.mark.parametrize("text", ["", "9", "0x1ff", "rw-r--r--", "17777", "123456"])
def test_bad_modes(text):
    with pytest.raises(CliError, match="Invalid mode"):
        parse_mode(text)


def test_source_names():
    assert source_name("a/b/") == "b"
    assert source_name("./") == "."
    assert source_name("/") == ""
    assert source_name("file.txt") == "file.txt"


def plan(sources, target, kind, recursive=False, create_dirs=False, dirs=None):
    return plan_push(sources, ip(target), kind, recursive=recursive, create_dirs=create_dirs,
                     source_is_dir=dirs or [False] * len(sources))


def test_push_one_file():
    assert plan(["a.conf"], "c/etc/app.conf", None).destinations == ["/etc/app.conf"]
    assert plan(["a.conf"], "c/etc/app.conf", "file").destinations == ["/etc/app.conf"]
    assert plan(["x/a.conf"], "c/etc", "directory").destinations == ["/etc/a.conf"]
    p = plan(["a.conf"], "c/etc/new/", None, create_dirs=True)
    assert (p.destinations, p.make_target_dir) == (["/etc/new/a.conf"], True)


def test_push_several_sources():
    p = plan(["a", "b"], "c/tmp", "directory")
    assert (p.destinations, p.make_target_dir) == (["/tmp/a", "/tmp/b"], False)
    with pytest.raises(CliError, match="^Missing target directory c/tmp/new"):
        plan(["a", "b"], "c/tmp/new", None)
    with pytest.raises(CliError, match="^Target c/tmp/f is not a directory$"):
        plan(["a", "b"], "c/tmp/f", "file")
    with pytest.raises(CliError, match="^Target c/tmp/f is not a directory$"):
        plan(["a"], "c/tmp/f/", "file")


def test_push_stdin():
    assert plan(["-"], "c/tmp/f", None).destinations == ["/tmp/f"]
    for target, kind in (("c/tmp/", "directory"), ("c/tmp", "directory")):
        with pytest.raises(CliError, match="needs a target file name"):
            plan(["-"], target, kind)
    with pytest.raises(CliError, match="only once"):
        plan(["-", "-"], "c/tmp", "directory")


def test_push_recursive_is_cp_like():
    # Missing target: the target becomes the copy of the source.
    assert plan(["site"], "c/var/www", None, True, dirs=[True]).destinations == ["/var/www"]
    # Existing target: the source goes inside, by its name ...
    assert plan(["site/"], "c/var/www", "directory", True, dirs=[True]).destinations == \
        ["/var/www/site"]
    # ... and `./` copies the contents.
    assert plan(["./"], "c/tmp/ptest", "directory", True, dirs=[True]).destinations == \
        ["/tmp/ptest"]
    with pytest.raises(CliError, match="use --recursive/-r"):
        plan(["site"], "c/var/www", None, dirs=[True])
    with pytest.raises(CliError, match="over c/etc/hosts, which is a file"):
        plan(["site"], "c/etc/hosts", "file", True, dirs=[True])


def test_parents():
    assert parents("/a/b/c") == ["/a", "/a/b"]
    assert parents("/a") == []


def pull(kinds, target, is_dir=False, exists=False, recursive=False, sources=None):
    srcs = [ip(s) for s in (sources or [f"c/src{i}" for i in range(len(kinds))])]
    return plan_pull(srcs, kinds, target, is_dir, exists, recursive=recursive)


def test_pull_naming():
    assert pull(["file"], "out.txt").destinations == ["out.txt"]
    assert pull(["file"], "dir", is_dir=True, exists=True).destinations == ["dir/src0"]
    p = pull(["file"], "new/")
    assert (p.destinations, p.make_target_dir) == (["new/src0"], True)
    p = pull(["file", "file"], "many")
    assert (p.destinations, p.make_target_dir) == (["many/src0", "many/src1"], True)
    assert pull(["file", "file"], "-").destinations == ["-", "-"]
    assert pull(["directory"], "logs", recursive=True).destinations == ["logs"]
    assert pull(["directory"], "logs", True, True, True).destinations == ["logs/src0"]
    assert pull(["directory"], "out", True, True, True, ["c/"]).destinations == ["out/c"]


def test_pull_errors():
    with pytest.raises(CliError, match="^--recursive/-r is required when pulling directories$"):
        pull(["directory"], "x")
    with pytest.raises(CliError, match="to standard output"):
        pull(["directory"], "-", recursive=True)
    with pytest.raises(CliError, match="^Target f is not a directory$"):
        pull(["file", "file"], "f", exists=True)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc", "a\0", 5, None])
def test_listing_names_are_checked(name):
    with pytest.raises(CliError, match="invalid file name"):
        safe_entry_name(name)


def test_resolve_link():
    assert resolve_link("/etc/resolv.conf", "../run/r.conf") == "/run/r.conf"
    assert resolve_link("/a/b", "/x/../y") == "/y"
    assert resolve_link("/l", "../../..") == "/"


@pytest.mark.parametrize("argv, message", [
    (["push", "--mode", "9", "a", "c/x"], 'Invalid mode "9"'),
    (["push", "--uid", "-3", "a", "c/x"], "--uid"),
    (["create", "--type", "fifo", "c/x"], "'fifo' is not one of"),
])
def test_cli_usage_errors(argv, message):
    result = CliRunner().invoke(cli, ["file", *argv])
    assert result.exit_code == 2
    assert message in result.output


def test_file_group_has_help_and_rm_alias():
    result = CliRunner().invoke(cli, ["file", "--help"])
    assert result.exit_code == 0
    for name in ("push", "pull", "delete", "create", "edit", "rm"):
        assert name in result.output
    result = CliRunner().invoke(cli, ["file", "rm", "--help"])
    assert result.exit_code == 0 and "--force" in result.output

"""What an LXD user sees from the issue-3 command groups without a daemon: help listings,
aliases, usage errors that name what is wrong (found by trying the commands as a user)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.commands.file import Files, _pull_file
from cli.errors import CliError
from cli.main import cli
from cli.params import local_name

GROUPS = [["file"], ["config"], ["config", "device"], ["profile"], ["profile", "device"]]


def run(*argv: str):
    return CliRunner().invoke(cli, list(argv), prog_name="mc")


@pytest.mark.parametrize("group", GROUPS, ids=" ".join)
def test_group_help_lists_whole_summaries(group):
    """Summaries were cut at 45 characters ("Create an empty file, a directory or a...")."""
    result = run(*group, "--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:\n", 1)[1].split("Aliases:", 1)[0]
    assert not [line for line in commands.splitlines() if line.endswith("...")]


@pytest.mark.parametrize("group,aliases", [
    (["profile"], {"cp": "copy", "ls": "list", "mv": "rename", "rm": "delete"}),
    (["profile", "device"], {"ls": "list", "rm": "remove"}),
    (["config", "device"], {"ls": "list", "rm": "remove"}),
])
def test_aliases_are_listed_as_aliases_and_work(group, aliases):
    """They were listed as commands of their own, each with the same summary twice."""
    result = run(*group, "--help")
    commands, _, alias_section = result.output.partition("Aliases:\n")
    for alias, name in aliases.items():
        assert f"  {alias}  = {name}" in alias_section
        assert f"\n  {alias} " not in commands
        usage = run(*group, alias, "--help").output
        assert f"Usage: mc {' '.join(group)} {name} " in usage


def test_device_groups_say_what_they_manage():
    assert "Manage profile devices." in run("profile", "device", "--help").output
    assert "Manage instance devices" in run("config", "--help").output


def test_profile_list_refuses_a_stray_argument_and_bad_formats():
    result = run("profile", "list", "xyz")
    assert result.exit_code == 2
    assert 'Unexpected argument "xyz": expected [<remote>:]' in result.output
    result = run("profile", "list", "far:")
    assert result.exit_code == 1 and 'The remote "far" doesn\'t exist' in result.output
    result = run("profile", "list", "-f", "xml")
    assert result.exit_code == 2
    assert ("Invalid value for '-f' / '--format': \"xml\" is not one of table, compact, csv, "
            "json, yaml") in result.output


def test_empty_names_say_what_kind_of_name_is_missing():
    with pytest.raises(CliError, match='Missing profile name in ""'):
        local_name("", "profile")
    with pytest.raises(CliError, match='Missing instance name in "local:"'):
        local_name("local:")
    result = run("profile", "show", "")
    assert result.exit_code == 1 and 'Missing profile name in ""' in result.output


def test_profile_get_usage_names_the_key_argument():
    result = run("profile", "get", "default")
    assert result.exit_code == 2 and "<key>" in result.output


def test_pull_into_a_missing_directory_names_the_target_not_a_temporary_file(tmp_path):
    dest = tmp_path / "no" / "dir" / "hosts"
    with pytest.raises(CliError) as err:
        _pull_file(Files(None, "c1", False), "/etc/hosts", str(dest))  # type: ignore[arg-type]
    assert err.value.message == (f"Cannot write {dest}: {dest.parent}: No such file or "
                                 "directory (use --create-dirs/-p to create it)")
    assert not (tmp_path / "no").exists()


def test_progress_of_a_stream_of_unknown_length_shows_the_amount_not_100_percent():
    """`mc file push - c1/x` on a terminal showed "100%" from the first byte."""
    from cli.transfer import Progress

    p = Progress("Pushing /x", 0, enabled=False)
    p.update(3_000_000)
    assert p.line(p.start + 2.0) == "Pushing /x: 3.0MB (1.5MB/s)"
    # `push -r` estimates the tar stream's size; the archive's end padding must not make it
    # say more than 100%.
    p = Progress("Pushing tree", 10_000, enabled=False)
    p.update(20_240)
    assert p.line(p.start + 1.0) == "Pushing tree: 100% (0.0MB/s)"


def test_file_names_that_are_not_utf8_are_refused_before_any_request():
    with pytest.raises(CliError) as err:
        Files(None, "c1", False).url("/tmp/n\udcff")  # type: ignore[arg-type]
    assert err.value.message == ("Invalid path '/tmp/n\\udcff' in c1: only UTF-8 file names "
                                 "can be transferred")
    result = run("file", "push", "", "c1/x")
    assert result.exit_code == 1
    assert 'Invalid source path "": expected a local file name or - (stdin)' in result.output

"""The one error handler: `Error: <sentence>` on stderr, exit 1; usage errors exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.context import Env
from cli.errors import ApiError
from cli.main import cli


def test_missing_socket(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["list"], env={"MACHINED_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: machined is not running (no socket at {tmp_path}/unix.socket); "
        'start it with "machined &"\n'
    )
    assert result.stdout == ""


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--debug", "list"], env={"MACHINED_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().endswith('start it with "machined &"')


def test_unknown_remote_is_an_error() -> None:
    result = CliRunner().invoke(cli, ["list", "nowhere:"])
    assert result.exit_code == 1
    assert result.stderr == 'Error: The remote "nowhere" doesn\'t exist\n'


def test_image_server_has_no_instances() -> None:
    result = CliRunner().invoke(cli, ["list", "images:"])
    assert result.exit_code == 1
    assert result.stderr == ('Error: The remote "images" is a simplestreams image server '
                             "(read-only): it only serves images to list, show, launch and "
                             "copy\n")


def test_usage_errors_exit_2() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["no-such-command"]).exit_code == 2
    assert runner.invoke(cli, ["rename", "only-one"]).exit_code == 2
    assert runner.invoke(cli, ["list", "--format"]).exit_code == 2


class FakeClient:
    def __init__(self, error: ApiError) -> None:
        self.error = error

    def get(self, path: str, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    put = post = delete = get

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "args",
    [["list"], ["start", "c1"], ["delete", "c1"], ["info", "c1"], ["image", "list"]],
)
def test_api_errors_are_one_sentence(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    fake = FakeClient(ApiError('Instance "c1" not found', 404))
    monkeypatch.setattr(Env, "client", lambda self, remote=None: fake)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr == 'Error: Instance "c1" not found\n'


def test_unexpected_exceptions_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Env, remote: str | None = None) -> Any:
        raise RuntimeError("bad thing")

    monkeypatch.setattr(Env, "client", boom)
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: RuntimeError: bad thing")

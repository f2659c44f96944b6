"""`mc` entry point: the root click group, lazy sub-commands, the one error handler.

Start-up matters (`mc exec c1 -- true` should take well under 60 ms), so this module imports
only click and mc's stdlib-only helpers; commands import what they need when they run.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import click

from cli import __version__
from cli.context import Env
from cli.errors import CliError
from cli.lazy import LazyGroup

COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("cli.commands.config:config", "Manage instance and server configuration"),
    "console": ("cli.commands.console:console", "Show an instance's console log"),
    "copy": ("cli.commands.copy:copy_cmd", "Copy instances and snapshots into new instances"),
    "delete": ("cli.commands.delete:delete", "Delete instances and snapshots"),
    "exec": ("cli.commands.exec:exec_cmd", "Run a command in an instance"),
    "file": ("cli.commands.file:file_group", "Manage files in instances"),
    "image": ("cli.commands.image:image", "Manage images"),
    "info": ("cli.commands.info:info", "Show instance or server information"),
    "init": ("cli.commands.create:init", "Create instances from images"),
    "launch": ("cli.commands.create:launch", "Create and start instances from images"),
    "list": ("cli.commands.list:list_cmd", "List instances"),
    "move": ("cli.commands.copy:move", "Rename instances or move them to another pool"),
    "network": ("cli.commands.network:network", "Manage and attach instances to networks"),
    "operation": ("cli.commands.operation:operation", "List, show and cancel operations"),
    "pause": ("cli.commands.action:pause", "Pause (freeze) instances"),
    "profile": ("cli.commands.profile:profile", "Manage profiles"),
    "publish": ("cli.commands.publish:publish", "Publish instances as images"),
    "remote": ("cli.commands.remote:remote", "Manage the list of remote servers"),
    "rename": ("cli.commands.rename:rename", "Rename instances and snapshots"),
    "restart": ("cli.commands.action:restart", "Restart instances"),
    "restore": ("cli.commands.snapshot:restore", "Restore instances from snapshots"),
    "resume": ("cli.commands.action:resume", "Resume (unfreeze) instances"),
    "start": ("cli.commands.action:start", "Start instances"),
    "simplestreams": (
        "cli.commands.simplestreams:simplestreams",
        "Write a simplestreams image server tree from local images",
    ),
    "snapshot": ("cli.commands.snapshot:snapshot", "Create instance snapshots"),
    "stop": ("cli.commands.action:stop", "Stop instances"),
    "storage": ("cli.commands.storage:storage", "Manage storage pools"),
    "version": ("cli.commands.version:version", "Show client and server versions"),
    "warning": ("cli.commands.warning:warning", "Manage warnings"),
}
ALIASES = {
    "cp": "copy",
    "create": "init",
    "freeze": "pause",
    "ls": "list",
    "mv": "move",
    "rm": "delete",
    "unfreeze": "resume",
}


def _traceback() -> None:
    import traceback

    traceback.print_exc()


class Root(LazyGroup):
    """Turns every failure into `Error: <sentence>` and exit 1 (usage errors stay exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except CliError as e:
            if debug:
                _traceback()
            raise click.ClickException(e.message) from e
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # click quietens a closed stdout
            if debug:
                _traceback()
            where = f": {e.filename}" if e.filename else ""
            raise click.ClickException(f"{e.strerror or e}{where}") from e
        except (KeyboardInterrupt, EOFError):
            raise
        except Exception as e:
            if debug:
                _traceback()
                raise click.ClickException(f"{type(e).__name__}: {e}") from e
            raise click.ClickException(
                f"{type(e).__name__}: {e} (run with --debug for a traceback)"
            ) from e


@click.group(
    cls=Root,
    lazy=COMMANDS,
    aliases=ALIASES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("--debug", is_flag=True, help="Show tracebacks and the HTTP requests made.")
@click.option("-q", "--quiet", is_flag=True, help="Don't show progress information.")
@click.version_option(__version__, "--version", prog_name="mc", message="%(version)s")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """mc: command-line client of the machined system-container manager.

    Objects are named [<remote>:]<name> (see `mc remote list`).
    """
    ctx.obj = Env(debug=debug, quiet=quiet)
    ctx.call_on_close(_close_client(ctx.obj))


def _close_client(env: Env) -> Any:
    return env.close


def main() -> None:
    cli.main(prog_name="mc")
    sys.exit(0)


if __name__ == "__main__":
    main()

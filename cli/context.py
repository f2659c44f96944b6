"""The object every command receives: global flags and the (lazily opened) API client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.errors import CliError

if TYPE_CHECKING:
    from cli.client import Client
    from cli.remotes import ClientConfig


class Env:
    def __init__(self, debug: bool = False, quiet: bool = False) -> None:
        self.debug = debug
        self.quiet = quiet
        self._clients: dict[str, Client] = {}
        self._config: ClientConfig | None = None

    def config(self) -> ClientConfig:
        """The client configuration (remotes), read once per command."""
        if self._config is None:
            from cli.remotes import load_config

            self._config = load_config()
        return self._config

    def default_remote(self) -> str:
        """Read without YAML when the file allows (cli/confdir.py): most commands only need
        to learn that it is `local`."""
        if self._config is not None:
            return self._config.default_remote
        from cli.confdir import fast_default_remote

        name = fast_default_remote()
        return name if name is not None else self.config().default_remote

    def client(self, remote: str | None = None) -> Client:
        """The API client of `remote` (default: the default remote), opened once."""
        name = remote or self.default_remote()
        if name not in self._clients:
            if name == "local":  # static: this daemon's socket, no config needed
                from cli.client import Client

                self._clients[name] = Client(debug=self.debug)
            else:
                from cli.remotes import client_for

                self._clients[name] = client_for(self, name, self.config())
        return self._clients[name]

    def split(self, arg: str) -> tuple[str, str]:
        """`[remote:]object` -> (remote, object) with this user's remotes."""
        from cli.remotes import split

        if ":" not in arg:
            return self.default_remote(), arg
        return split(arg, self.config())

    def target(self, arg: str, what: str = "instance") -> tuple[Client, str]:
        """The client of the remote `arg` names and the (non-empty) object name."""
        remote, name = self.split(arg)
        if not name:
            raise CliError(f'Missing {what} name in "{arg}"')
        return self.client(remote), name

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def say(self, message: str) -> None:
        """Progress chatter (`Creating c1`); silenced by --quiet."""
        if not self.quiet:
            click.echo(message)


pass_env = click.make_pass_decorator(Env, ensure=True)


# -f/--format on every list command, as lxc has it.
format_option = click.option("-f", "--format", "fmt", default="table", show_default=True,
                             help="table, compact, csv, json or yaml.")

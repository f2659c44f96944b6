"""`mc exec` without click: the request, the session, and a strict parser for the common
forms. click costs ~50 ms to import on a small VM, more than the whole exec budget, so
cli/entry.py runs exec through here when parse_fast() understands the arguments; anything else
(help, bundled short flags, bad values) goes through click, which stays the one definition of
the command (cli/commands/exec.py) and is held to this parser by a parity test."""

from __future__ import annotations

import os
import sys

from cli.errors import CliError, UsageError

# Annotations only: importing typing costs ~5 ms of mc exec's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VALUE_OPTIONS = {"--env", "--mode", "--user", "--group", "--cwd"}
FLAGS = {"-t": "force_interactive", "--force-interactive": "force_interactive",
         "-T": "force_noninteractive", "--force-noninteractive": "force_noninteractive",
         "-n": "disable_stdin", "--disable-stdin": "disable_stdin"}
MODES = ("auto", "interactive", "non-interactive")


def insert_separator(args: list[str]) -> list[str]:
    """Options may follow the instance name, but the command starts at the next word:
    `exec c1 ls -la` is read as `exec c1 -- ls -la`."""
    out: list[str] = []
    positional = 0
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        if arg.startswith("-") and arg != "-":
            out.append(arg)
            if arg in VALUE_OPTIONS and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
            i += 1
            continue
        positional += 1
        if positional == 2:
            return out + ["--"] + args[i:]
        out.append(arg)
        i += 1
    return out


def parse_fast(args: list[str]) -> dict[str, Any] | None:
    """The arguments after `exec` as the click command's parameters, or None when anything is
    outside the plain forms (then click parses them and reports errors)."""
    params: dict[str, Any] = {
        "name": None, "command": (), "env_vars": [], "mode": "auto", "force_interactive": False,
        "force_noninteractive": False, "disable_stdin": False, "user": 0, "group": 0, "cwd": ""}
    words = insert_separator(args)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            params["command"] = tuple(words[i + 1:])
            break
        if word in FLAGS:
            params[FLAGS[word]] = True
        elif word.split("=", 1)[0] in VALUE_OPTIONS:
            option, eq, value = word.partition("=")
            if not eq:
                if i + 1 >= len(words) or words[i + 1] == "--":
                    return None
                i += 1
                value = words[i]
            if option == "--env":
                params["env_vars"].append(value)
            elif option == "--mode":
                if value not in MODES:
                    return None
                params["mode"] = value
            elif option in ("--user", "--group"):
                if not value.isdigit():
                    return None
                params[option[2:]] = int(value)
            else:
                params["cwd"] = value
        elif word.startswith("-") or params["name"] is not None:
            return None
        else:
            params["name"] = word
        i += 1
    if params["name"] is None or not params["command"]:
        return None
    params["env_vars"] = tuple(params["env_vars"])
    return params


def choose_interactive(mode: str, force_interactive: bool, force_noninteractive: bool,
                       disable_stdin: bool, stdin_tty: bool, stdout_tty: bool) -> bool:
    """lxc's rule: -t/-T or --mode decide; otherwise stdin AND stdout must both be TTYs."""
    if force_interactive and force_noninteractive:
        raise UsageError("You can't pass -t and -T at the same time")
    if mode != "auto" and (force_interactive or force_noninteractive):
        raise UsageError("You can't pass -t or -T at the same time as --mode")
    if force_interactive or mode == "interactive":
        return True
    if force_noninteractive or mode == "non-interactive":
        return False
    return stdin_tty and stdout_tty and not disable_stdin


def exec_request(command: list[str], env: tuple[str, ...], interactive: bool, width: int,
                 height: int, user: int, group: int, cwd: str, term: str | None
                 ) -> dict[str, Any]:
    from cli.params import parse_key_value

    environment: dict[str, str] = {}
    if interactive and term:
        environment["TERM"] = term
    environment.update(parse_key_value(e, allow_bare=True) for e in env)
    return {
        "command": command, "environment": environment, "interactive": interactive,
        "wait-for-websocket": True, "record-output": False, "width": width, "height": height,
        "user": user, "group": group, "cwd": cwd,
    }


def run_exec(client: Any, params: dict[str, Any]) -> int:
    """Run the command in instance params["name"] (already split from its remote, which
    `client` talks to); the result is its exit status."""
    from cli.exec_session import Session, terminal_size
    from cli.params import url_part

    if not params["name"]:
        raise CliError("Missing instance name")

    interactive = choose_interactive(
        params["mode"], params["force_interactive"], params["force_noninteractive"],
        params["disable_stdin"], os.isatty(0), os.isatty(1))
    if interactive and getattr(client, "url", None):
        # one TLS socket would be read and written by two threads at once, which OpenSSL
        # does not allow
        raise CliError("Interactive exec on an https remote is not supported yet; use -T")
    width, height = terminal_size()
    body = exec_request(list(params["command"]), params["env_vars"], interactive, width,
                        height, params["user"], params["group"], params["cwd"],
                        os.environ.get("TERM"))
    op = client.post(f"/1.0/instances/{url_part(params['name'])}/exec", body, wait=False)
    return int(Session(client, op).run(interactive, params["disable_stdin"]))


def run_fast(params: dict[str, Any]) -> int:
    """The fast path's own error handler: the same `Error: ...` lines and codes as mc's."""
    from cli.client import Client
    from cli.confdir import LOCAL, fast_split

    found = fast_split(params["name"])
    client: Any = None
    try:
        if found is not None and found[0] == LOCAL:
            client = Client()
            return run_exec(client, {**params, "name": found[1]})
        from cli.remotes import load_config, split

        conf = load_config()
        remote, name = split(params["name"], conf)
        client = remote_client(remote, conf)
        return run_exec(client, {**params, "name": name})
    except UsageError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return 2
    except CliError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"Error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if client is not None:
            client.close()


def remote_client(remote: str, conf: Any) -> Any:
    """The client of a remote other than local, outside click (no Env)."""
    from cli.remotes import client_for

    class _Flags:
        debug = False

    return client_for(_Flags(), remote, conf)

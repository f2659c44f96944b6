"""Where mc's client configuration lives, and the default remote read without YAML.

`mc exec c1 -- true` runs before click is imported (cli/exec_core.py) and must not pay for yaml
(~35 ms here) or dataclasses (~13 ms) just to learn that the default remote is `local`: this
module scans config.yml for its `default-remote:` line and needs only what exec already loads.
cli/remotes.py has the full reader.
"""

from __future__ import annotations

import os

CONFIG_FILE = "config.yml"
LOCAL = "local"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def valid_name(name: str) -> bool:
    """A remote name: letters, digits, '.', '_', '-', starting with a letter or digit (no
    regex: compiling one costs exec's start-up a millisecond)."""
    return bool(name) and name[0] not in "._-" and set(name) <= _NAME_CHARS


def conf_dir() -> str:
    """$MC_CONF, else ~/.config/mc."""
    return os.environ.get("MC_CONF") or os.path.join(os.path.expanduser("~"), ".config", "mc")


def scan_default_remote(text: str) -> str | None:
    """The `default-remote:` value of a config file we (or a tidy user) wrote: the name, LOCAL
    when the key is absent, None when only a YAML parser can tell."""
    found: str | None = None
    for line in text.splitlines():
        if line.startswith("default-remote:"):
            if found is not None:
                return None
            value = line[len("default-remote:"):].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if not valid_name(value):
                return None
            found = value
        elif "default-remote" in line or line.lstrip().startswith(("{", "%", "---", "...")):
            return None  # flow style, directives, several documents: leave it to YAML
    return found if found is not None else LOCAL


def read_config_text() -> str | None:
    """config.yml's text, None when there is none. Errors are OSError (callers word them)."""
    try:
        with open(os.path.join(conf_dir(), CONFIG_FILE)) as f:
            return f.read()
    except FileNotFoundError:
        return None


def fast_default_remote() -> str | None:
    """The default remote without YAML, or None when the file needs the full reader."""
    try:
        text = read_config_text()
    except OSError:
        return None  # let the full reader report it
    return LOCAL if text is None else scan_default_remote(text)


def fast_split(arg: str) -> tuple[str, str] | None:
    """`[remote:]object` -> (remote, object) when that needs no YAML (the remote is `local`,
    named or by default); None when the full reader must decide (cli/remotes.split)."""
    remote, sep, obj = arg.partition(":")
    if sep and remote == LOCAL:
        return LOCAL, obj
    if sep and "/" not in remote:
        return None  # names some other remote
    if fast_default_remote() == LOCAL:
        return LOCAL, arg
    return None

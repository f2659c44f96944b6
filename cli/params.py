"""Object syntax: `[remote:]name`, `inst/snap`, `inst/path`, `key=value`. Pure functions."""

from __future__ import annotations

from cli.errors import CliError

DEFAULT_REMOTE = "local"
REMOTES: tuple[str, ...] = ("local",)


def parse_remote(
    arg: str, remotes: tuple[str, ...] = REMOTES, default: str = DEFAULT_REMOTE
) -> tuple[str, str]:
    """Split `[remote:]object` at the first ':' into (remote, object).

    No ':' means the default remote. An unknown prefix is an error, except when the prefix holds
    a '/' (a snapshot name with a ':' in it), which is read as an object of the default remote.
    """
    remote, sep, name = arg.partition(":")
    if not sep:
        return default, arg
    if remote in remotes:
        return remote, name
    if "/" in remote:
        return default, arg
    raise CliError(f'The remote "{remote}" doesn\'t exist')


def local_name(arg: str, what: str = "instance") -> str:
    """The object part of `[local:]name`; an empty name is an error (`what` names the kind
    of object in that message)."""
    _, name = parse_remote(arg)
    if not name:
        raise CliError(f'Missing {what} name in "{arg}"')
    return name


def split_snapshot(obj: str) -> tuple[str, str | None]:
    """`c1/snap0` -> ("c1", "snap0"); `c1` -> ("c1", None)."""
    inst, sep, snap = obj.partition("/")
    return inst, (snap if sep else None)


def split_path(obj: str) -> tuple[str, str]:
    """`c1/etc/hosts` -> ("c1", "/etc/hosts"); split at the first '/'."""
    inst, sep, path = obj.partition("/")
    if not sep:
        raise CliError(f'Invalid path "{obj}": expected <instance>/<path>')
    return inst, "/" + path


def parse_key_value(item: str, *, allow_bare: bool = False) -> tuple[str, str]:
    """`k=v` -> (k, v). With allow_bare a lone `k` gives (k, "")."""
    key, sep, value = item.partition("=")
    if not sep and not allow_bare:
        raise CliError(f'Bad key=value pair: "{item}"')
    if not key:
        raise CliError(f'Bad key=value pair: "{item}"')
    return key, value


def parse_key_values(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    return dict(parse_key_value(i) for i in items)


def url_part(name: str) -> str:
    """One URL path segment: `debian/12` -> `debian%2F12`."""
    if name.isascii() and (name.replace("-", "").replace("_", "").replace(".", "").isalnum()):
        return name  # nothing to escape; spares importing urllib.parse on the exec path
    from urllib.parse import quote

    return quote(name, safe="")

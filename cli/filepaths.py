"""Pure rules of `mc file`: instance paths, --mode values and where each source lands
(incus's cp-like naming). No I/O: callers pass in what they found out."""

from __future__ import annotations

import posixpath
from collections.abc import Collection
from dataclasses import dataclass

from cli.errors import CliError
from cli.params import DEFAULT_REMOTE, REMOTES, parse_remote, split_path

MAX_ID = 0xFFFFFFFE
STDIO = "-"


@dataclass(frozen=True)
class InstancePath:
    """`[remote:]inst/some/path[/]`: path is absolute and cleaned; trailing_slash records
    that the user wrote one (it means "a directory")."""

    remote: str
    instance: str
    path: str
    trailing_slash: bool

    def __str__(self) -> str:
        return f"{self.instance}{self.path}"


def normalize(path: str) -> str:
    """Absolute and lexically cleaned, as the server does it (LXD: '/' + path.Clean)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def parse_instance_path(arg: str, remotes: Collection[str] = REMOTES,
                        default: str = DEFAULT_REMOTE) -> InstancePath:
    """`[remote:]inst/path`, with the user's remote names and default remote."""
    remote, obj = parse_remote(arg, tuple(remotes), default)
    inst, path = split_path(obj)
    if not inst:
        raise CliError(f'Invalid path "{arg}": expected <instance>/<path>')
    return InstancePath(remote, inst, normalize(path), path.endswith("/") and path != "/")


def parse_mode(text: str) -> int:
    """--mode: octal digits, with or without the leading 0 (`644` is `0644`)."""
    raw = text.strip()
    digits = raw[2:] if raw[:2] in ("0o", "0O") else raw
    if not digits or len(digits) > 5 or any(c not in "01234567" for c in digits):
        raise CliError(f'Invalid mode "{text}": expected an octal mode such as 0644 or 755')
    value = int(digits, 8)
    if value > 0o7777:
        raise CliError(f'Invalid mode "{text}": accepted are 0000 to 7777')
    return value


def join(base: str, name: str) -> str:
    """`base/name`, where a name of '' or '.' (the source was `./` or `/`) means base."""
    if name in ("", "."):
        return base
    return posixpath.join(base, name)


def source_name(src: str) -> str:
    """The last component of a local source: `a/b/` -> `b`, `./` -> `.`, `/` -> ``."""
    return posixpath.basename(posixpath.normpath(src)) if src != "/" else ""


@dataclass(frozen=True)
class PushPlan:
    destinations: list[str]  # one instance path per source
    make_target_dir: bool  # create the target directory itself first (-p)


def plan_push(sources: list[str], target: InstancePath, target_kind: str | None, *,
              recursive: bool, create_dirs: bool, source_is_dir: list[bool]) -> PushPlan:
    """Where each source lands. target_kind is what the target is in the instance (links
    followed), or None when it does not exist."""
    if sources.count(STDIO) > 1:
        raise CliError("Standard input (-) can be pushed only once")
    several = len(sources) > 1
    is_dir = target_kind == "directory"
    if target_kind is not None and not is_dir and (several or target.trailing_slash):
        raise CliError(f"Target {target} is not a directory")
    if STDIO in sources and (several or is_dir or target.trailing_slash):
        raise CliError("Pushing standard input (-) needs a target file name")
    for src, src_dir in zip(sources, source_is_dir, strict=True):
        if src_dir and not recursive:
            raise CliError(f"{src} is a directory: use --recursive/-r to push directories")
        if src_dir and target_kind is not None and not is_dir:
            raise CliError(f"Cannot push directory {src} over {target}, which is a "
                           f"{target_kind}")
    into = is_dir or several or target.trailing_slash
    make = False
    if into and target_kind is None:
        if not create_dirs:
            raise CliError(f"Missing target directory {target} (use --create-dirs/-p to "
                           "create it)")
        make = True
    if not into:
        return PushPlan([target.path], False)
    return PushPlan([join(target.path, source_name(s)) for s in sources], make)


def parents(path: str) -> list[str]:
    """Ancestors of an absolute path, top first, without '/' itself."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class PullPlan:
    destinations: list[str]  # one local path per source ("-" = stdout)
    make_target_dir: bool  # mkdir -p the target first


def plan_pull(sources: list[InstancePath], kinds: list[str], target: str,
              target_is_dir: bool, target_exists: bool, *, recursive: bool) -> PullPlan:
    """Where each pulled source goes locally. kinds are the sources' types (links
    followed): file or directory."""
    for src, kind in zip(sources, kinds, strict=True):
        if kind == "directory" and not recursive:
            raise CliError("--recursive/-r is required when pulling directories")
        if kind == "directory" and target == STDIO:
            raise CliError(f"Cannot pull directory {src} to standard output")
    if target == STDIO:
        return PullPlan([STDIO] * len(sources), False)
    several = len(sources) > 1
    if target_exists and not target_is_dir:
        if several:
            raise CliError(f"Target {target} is not a directory")
        if kinds[0] == "directory":
            raise CliError(f"Cannot pull directory {sources[0]} over {target}, which is not "
                           "a directory")
    into = target_is_dir or several or target.endswith("/")
    if not into:
        return PullPlan([target], False)
    base = target.rstrip("/") or "/"
    names = [source_name(s.path) or s.instance for s in sources]
    return PullPlan([posixpath.join(base, n) for n in names], not target_exists)


def safe_entry_name(name: object) -> str:
    """A name from a directory listing of the instance, checked before it is used as one
    local path component (the listing comes from a hostile filesystem)."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name
            or "\0" in name):
        raise CliError(f"The instance listed an invalid file name: {name!r}")
    return name


def resolve_link(path: str, target: str) -> str:
    """Where a symlink at `path` with text `target` points, as an instance path."""
    if target.startswith("/"):
        return normalize(target)
    return normalize(posixpath.join(posixpath.dirname(path), target))

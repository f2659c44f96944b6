"""mc's client configuration: the remotes (`$MC_CONF/config.yml`, default ~/.config/mc/).

    default-remote: local
    remotes:
      lab: {addr: http://127.0.0.1:8000, protocol: simplestreams, public: true}
      lab2: {addr: https://10.0.0.2:8443, protocol: machined, auth_type: tls}

`local`, `ubuntu` and `ubuntu-daily` are static: always present with their built-in address,
whatever the file says (as lxc). `images` is a default that users may remove or re-point.
Pinned server certificates live in `servercerts/<remote>.crt`.

Start-up matters: `mc exec c1` must not import yaml just to learn that the default remote is
`local`; cli/confdir.py reads that line without it and `default_remote()` falls back to YAML
only when the line is anything but a plain name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cli.confdir import CONFIG_FILE, LOCAL, fast_default_remote, valid_name
from cli.errors import CliError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cli.client import Client
    from cli.context import Env

PROTOCOLS = ("machined", "simplestreams")
AUTH_TYPES = ("tls",)
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"


@dataclass(frozen=True)
class Remote:
    name: str
    addr: str
    protocol: str = "machined"
    public: bool = False
    static: bool = False
    auth_type: str = ""

    @property
    def scheme(self) -> str:
        return self.addr.partition("://")[0]

    @property
    def is_unix(self) -> bool:
        return self.scheme == "unix"

    @property
    def socket(self) -> str | None:
        """The socket of a unix remote; None means this daemon's (from MACHINED_DIR)."""
        path = self.addr[len("unix://"):] if self.is_unix else ""
        return path or None

    def auth_label(self) -> str:
        """The AUTH TYPE column, as lxc words it."""
        if self.auth_type:
            return self.auth_type
        if self.is_unix:
            return "file access"
        return "none" if self.protocol == "simplestreams" or self.public else "tls"


STATIC: dict[str, Remote] = {
    r.name: r
    for r in (
        Remote(LOCAL, "unix://", "machined", static=True),
        Remote("ubuntu", "https://cloud-images.ubuntu.com/releases", "simplestreams",
               public=True, static=True),
        Remote("ubuntu-daily", "https://cloud-images.ubuntu.com/daily", "simplestreams",
               public=True, static=True),
    )
}
DEFAULTS: dict[str, Remote] = {
    **STATIC,
    "images": Remote("images", "https://images.linuxcontainers.org", "simplestreams",
                     public=True),
}


@dataclass
class ClientConfig:
    directory: Path
    default_remote: str = LOCAL
    remotes: dict[str, Remote] = field(default_factory=lambda: dict(DEFAULTS))
    extra: dict[str, Any] = field(default_factory=dict)  # `aliases:` etc., kept as found

    @property
    def path(self) -> Path:
        return self.directory / CONFIG_FILE

    def names(self) -> tuple[str, ...]:
        return tuple(self.remotes)

    def get(self, name: str) -> Remote:
        try:
            return self.remotes[name]
        except KeyError:
            raise CliError(f'The remote "{name}" doesn\'t exist') from None

    def server_cert(self, name: str) -> Path:
        return self.directory / "servercerts" / f"{name}.crt"

    def pinned_pem(self, name: str) -> str:
        """The pinned certificate of remote `name` (PEM), or '' when none is pinned."""
        try:
            return self.server_cert(name).read_text()
        except FileNotFoundError:
            return ""


# -- locating and reading ------------------------------------------------------------------
def conf_dir() -> Path:
    from cli.confdir import conf_dir as directory

    return Path(directory())


def check_name(name: str) -> str:
    if not valid_name(name):
        raise CliError(f'Invalid remote name "{name}": use {NAME_RULE}')
    return name


def default_remote() -> str:
    """The default remote's name; cheap (no YAML) for a plain config file."""
    name = fast_default_remote()
    return name if name is not None else load_config().default_remote


def load_config(directory: Path | None = None) -> ClientConfig:
    directory = directory or conf_dir()
    path = directory / CONFIG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ClientConfig(directory)
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text (a YAML file with default-remote and "
                       "remotes is expected)") from None
    return parse_config(text, directory)


def remote_names() -> tuple[str, ...]:
    return load_config().names()


def get(name: str) -> Remote:
    return load_config().get(name)


# -- parsing (pure) ------------------------------------------------------------------------
class _Doc:
    """A composed YAML document: values with the line each came from, for one-line errors."""

    def __init__(self, text: str, path: Path) -> None:
        import yaml

        self.path = path
        loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        loader = loader_cls(text)
        try:
            self.root = loader.get_single_node()
            self._loader = loader
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f": line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            loader.dispose()
            raise CliError(f"{path}{line}: {problem}") from None

    def fail(self, node: Any, message: str) -> CliError:
        return CliError(f"{self.path}: line {node.start_mark.line + 1}: {message}")

    def mapping(self, node: Any, what: str) -> list[tuple[str, Any, Any]]:
        """(key, key node, value node) of a mapping node; keys must be strings."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out = []
        for knode, vnode in node.value:
            key = self.scalar(knode)
            if not isinstance(key, str):
                raise self.fail(knode, f"{what}: keys must be strings, not {key!r}")
            out.append((key, knode, vnode))
        return out

    def scalar(self, node: Any) -> Any:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a single value here")
        return self.plain(node)

    def plain(self, node: Any) -> Any:
        import yaml

        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise self.fail(node, str(getattr(e, "problem", None) or e).splitlines()[0]) \
                from None

    def close(self) -> None:
        self._loader.dispose()


def parse_config(text: str, directory: Path) -> ClientConfig:
    """A config file's text as a ClientConfig; any problem is one CliError line
    `<path>: line N: <what is wrong and what is accepted>`."""
    conf = ClientConfig(directory, remotes=dict(STATIC))
    if not text.strip():
        conf.remotes = dict(DEFAULTS)
        return conf
    doc = _Doc(text, conf.path)
    try:
        if doc.root is None:
            conf.remotes = dict(DEFAULTS)
            return conf
        default_node = None
        for key, knode, vnode in doc.mapping(doc.root, "The configuration"):
            if key == "default-remote":
                value = doc.scalar(vnode)
                if not isinstance(value, str) or not value:
                    raise doc.fail(vnode, "default-remote must be a remote name")
                conf.default_remote, default_node = value, vnode
            elif key == "remotes":
                if _is_scalar(vnode) and doc.scalar(vnode) is None:
                    continue  # `remotes:` with nothing under it
                for name, rknode, rvnode in doc.mapping(vnode, "remotes"):
                    if name in STATIC:
                        continue  # static remotes always take their built-in values
                    conf.remotes[name] = _remote(doc, name, rknode, rvnode)
            elif key == "aliases":
                conf.extra[key] = doc.plain(vnode)
            else:
                raise doc.fail(knode, f'unknown key "{key}" (accepted: default-remote, '
                                      "remotes, aliases)")
        if conf.default_remote not in conf.remotes:
            where = default_node if default_node is not None else doc.root
            raise doc.fail(where, f'default-remote "{conf.default_remote}" is not one of the '
                                  f"remotes ({', '.join(conf.remotes)})")
    finally:
        doc.close()
    return conf


def _is_scalar(node: Any) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode)


def _remote(doc: _Doc, name: str, knode: Any, node: Any) -> Remote:
    if not valid_name(name):
        raise doc.fail(knode, f'invalid remote name "{name}": use {NAME_RULE}')
    fields: dict[str, Any] = {}
    for key, fknode, vnode in doc.mapping(node, f'remote "{name}"'):
        value = doc.scalar(vnode)
        if key == "addr":
            if not isinstance(value, str) or not value:
                raise doc.fail(vnode, f'remote "{name}": addr must be a URL')
            fields[key] = value
        elif key == "protocol":
            if value not in PROTOCOLS:
                raise doc.fail(vnode, f'remote "{name}": protocol "{value}" is not one of '
                                      f"{', '.join(PROTOCOLS)}")
            fields[key] = value
        elif key == "public":
            if not isinstance(value, bool):
                raise doc.fail(vnode, f'remote "{name}": public must be true or false')
            fields[key] = value
        elif key == "auth_type":
            if value not in ("", None, *AUTH_TYPES):
                raise doc.fail(vnode, f'remote "{name}": auth_type "{value}" is not one of '
                                      f"{', '.join(AUTH_TYPES)}")
            fields[key] = value or ""
        elif key == "project":
            if value not in ("", None, "default"):
                raise doc.fail(vnode, f'remote "{name}": projects are not supported')
        else:
            raise doc.fail(fknode, f'remote "{name}": unknown key "{key}" (accepted: addr, '
                                   "protocol, public, auth_type)")
    if "addr" not in fields:
        raise doc.fail(node, f'remote "{name}" has no addr')
    protocol = fields.get("protocol", "machined")
    try:
        addr = normalize_addr(fields["addr"], protocol)
    except CliError as e:
        raise doc.fail(node, f'remote "{name}": {e.message}') from None
    public = bool(fields.get("public", protocol == "simplestreams"))
    return Remote(name, addr, protocol, public, False, fields.get("auth_type", ""))


def normalize_addr(addr: str, protocol: str) -> str:
    """An address as stored: `unix://`, `unix:///path`, `https://host:port[/path]`
    (simplestreams also `http://`); a bare host means https on port 8443 (machined)."""
    from urllib.parse import urlsplit

    if protocol not in PROTOCOLS:
        raise CliError(f'Invalid protocol "{protocol}": accepted are {", ".join(PROTOCOLS)}')
    text = addr.strip()
    if text.startswith("/"):
        text = "unix://" + text
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise CliError(f'Invalid URL "{addr}": {e}') from None
    scheme = parts.scheme.lower()
    if parts.hostname:
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise CliError(f'Invalid URL "{addr}": "{parts.hostname}" is not a host name') \
                from None
    if protocol == "simplestreams":
        if scheme not in ("https", "http") or not parts.hostname:
            raise CliError(f'Invalid URL "{addr}": simplestreams remotes need an https:// '
                           "(or, for a local mirror, http://) URL")
        if parts.query or parts.fragment:
            raise CliError(f'Invalid URL "{addr}": no query or fragment allowed')
        return text.rstrip("/")
    if scheme == "unix":
        if parts.netloc:
            raise CliError(f'Invalid URL "{addr}": use unix:// (this machined) or '
                           "unix:///path/to/unix.socket")
        return "unix://" + parts.path
    if scheme == "http":
        raise CliError(f'Invalid URL "{addr}": http:// is only for simplestreams remotes '
                       "(--protocol simplestreams); machined remotes use https://")
    if scheme != "https" or not parts.hostname:
        raise CliError(f'Invalid URL "{addr}": machined remotes use https://host[:port], '
                       "unix:// or unix:///path")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise CliError(f'Invalid URL "{addr}": a machined remote is https://host[:port] '
                       "without a path")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port or 8443}"


def dump_config(conf: ClientConfig) -> str:
    """The file's text: every non-static remote (static ones are built in)."""
    import yaml

    remotes: dict[str, dict[str, Any]] = {}
    for r in conf.remotes.values():
        if r.static:
            continue
        entry: dict[str, Any] = {"addr": r.addr, "protocol": r.protocol, "public": r.public}
        if r.auth_type:
            entry["auth_type"] = r.auth_type
        remotes[r.name] = entry
    data: dict[str, Any] = {"default-remote": conf.default_remote, "remotes": remotes}
    data.update(conf.extra)
    return str(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))


def save_config(conf: ClientConfig) -> None:
    """Write atomically (temp file + rename): a crash leaves the old file or the new one."""
    directory = conf.directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = dump_config(conf)
    tmp = directory / f".{CONFIG_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, conf.path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pin_certificate(conf: ClientConfig, name: str, pem: str) -> None:
    """Store a remote's server certificate (servercerts/<name>.crt), atomically."""
    directory = conf.directory / "servercerts"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = conf.server_cert(name)
    tmp = directory / f".{name}.crt.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def with_remote(conf: ClientConfig, remote: Remote) -> ClientConfig:
    """A copy of conf with `remote` added or replaced (order kept)."""
    return replace(conf, remotes={**conf.remotes, remote.name: remote})


# -- clients -------------------------------------------------------------------------------
def split(arg: str, conf: ClientConfig | None = None) -> tuple[str, str]:
    """`[remote:]object` -> (remote, object), with this user's remotes. YAML is loaded only
    when the argument names a remote or the default remote is not a plain `local`."""
    from cli.params import parse_remote

    if ":" not in arg and conf is None:
        return default_remote(), arg
    conf = conf or load_config()
    return parse_remote(arg, conf.names(), conf.default_remote)


def ssl_context(conf: ClientConfig, remote: Remote) -> Any:
    """The TLS context for an https remote: its pinned certificate if one is, else the system
    CA store; our client certificate is presented unless the remote is public."""
    from cli import tls

    return tls.client_context(
        server_pem=conf.pinned_pem(remote.name) or None,
        client_cert=None if remote.public else tls.client_cert_paths(conf.directory),
    )


def client_for(env: Env, name: str, conf: ClientConfig | None = None) -> Client:
    """An API client for a machined remote (a CliError for an image server)."""
    from cli.client import Client

    if name == LOCAL:
        return Client(debug=env.debug)
    conf = conf or load_config()
    remote = conf.get(name)
    if remote.protocol == "simplestreams":
        raise CliError(f'The remote "{name}" is a simplestreams image server (read-only): '
                       "it only serves images to list, show, launch and copy")
    if remote.is_unix:
        return Client(path=remote.socket, debug=env.debug)
    return Client(url=remote.addr, ssl_context=ssl_context(conf, remote), debug=env.debug)

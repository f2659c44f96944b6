"""`mc remote add|list|rename|remove|switch|get-default|set-url`, as lxc.

Adding a remote checks it before anything is saved: a simplestreams server must serve
`streams/v1/index.json`; a machined server must answer GET /1.0 and, unless added --public,
trust this client (a trust token makes it do so). An https server whose certificate the system
CA store does not vouch for is pinned (servercerts/<name>.crt) once the user accepted its
fingerprint: asked on a terminal, or with --accept-certificate.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cli.context import Env, format_option, pass_env
from cli.errors import CliError
from cli.lazy import LazyGroup

if TYPE_CHECKING:
    from cli.client import Client
    from cli.remotes import ClientConfig, Remote

HEADER = ["NAME", "URL", "PROTOCOL", "AUTH TYPE", "PUBLIC", "STATIC"]


@click.group("remote", cls=LazyGroup,
             aliases={"ls": "list", "mv": "rename", "rm": "remove", "set-default": "switch"})
def remote() -> None:
    """Manage the list of remote servers.

    \b
      mc remote add lab https://images.example.org --protocol simplestreams
      mc remote add lab2 https://10.0.0.2:8443 --token <token from mc config trust add>
      mc remote list
    """


# -- list and the default ---------------------------------------------------------------------
def remote_rows(conf: ClientConfig) -> tuple[list[list[str]], dict[str, Any]]:
    """The table rows (sorted by name, the default marked "(current)" as lxc does) and the
    JSON/YAML form (name -> fields)."""
    rows, raw = [], {}
    for name in sorted(conf.remotes):
        r = conf.remotes[name]
        label = f"{name} (current)" if name == conf.default_remote else name
        rows.append([label, r.addr, r.protocol, r.auth_label(), "YES" if r.public else "NO",
                     "YES" if r.static else "NO"])
        raw[name] = {"addr": r.addr, "protocol": r.protocol, "auth_type": r.auth_label(),
                     "public": r.public, "static": r.static}
    return rows, raw


@remote.command("list")
@format_option
@pass_env
def list_cmd(env: Env, fmt: str) -> None:
    """List the remotes."""
    from cli.output import render

    rows, raw = remote_rows(env.config())
    click.echo(render(fmt, HEADER, rows, raw), nl=False)


@remote.command("get-default")
@pass_env
def get_default(env: Env) -> None:
    """Show the default remote."""
    click.echo(env.config().default_remote)


@remote.command("switch", short_help="Set the default remote.")
@click.argument("name")
@pass_env
def switch(env: Env, name: str) -> None:
    """Make a remote the default one (used when no `<remote>:` is given)."""
    from cli.remotes import save_config

    conf = env.config()
    conf.get(name)
    conf.default_remote = name
    save_config(conf)


# -- changing remotes -------------------------------------------------------------------------
def _modifiable(conf: ClientConfig, name: str) -> Remote:
    r = conf.get(name)
    if r.static:
        raise CliError(f'The remote "{name}" is static and cannot be modified')
    return r


@remote.command("rename")
@click.argument("old")
@click.argument("new")
@pass_env
def rename(env: Env, old: str, new: str) -> None:
    """Rename a remote."""
    from dataclasses import replace

    from cli.remotes import check_name, save_config

    conf = env.config()
    r = _modifiable(conf, old)
    check_name(new)
    if new in conf.remotes:
        raise CliError(f'The remote "{new}" already exists')
    pinned, target = conf.server_cert(old), conf.server_cert(new)
    if pinned.exists():
        pinned.rename(target)
    conf.remotes = {(new if k == old else k): (replace(r, name=new) if k == old else v)
                    for k, v in conf.remotes.items()}
    if conf.default_remote == old:
        conf.default_remote = new
    try:
        save_config(conf)
    except BaseException:
        if target.exists():
            target.rename(pinned)
        raise


@remote.command("remove")
@click.argument("name")
@pass_env
def remove(env: Env, name: str) -> None:
    """Remove a remote (not a static one, nor the default)."""
    from cli.remotes import save_config

    conf = env.config()
    _modifiable(conf, name)
    if conf.default_remote == name:
        raise CliError(f'The remote "{name}" is the default remote and cannot be removed; '
                       "switch to another one first (mc remote switch local)")
    del conf.remotes[name]
    save_config(conf)
    conf.server_cert(name).unlink(missing_ok=True)


@remote.command("set-url")
@click.argument("name")
@click.argument("url")
@pass_env
def set_url(env: Env, name: str, url: str) -> None:
    """Change a remote's address."""
    from dataclasses import replace

    from cli.remotes import normalize_addr, save_config

    conf = env.config()
    r = _modifiable(conf, name)
    conf.remotes[name] = replace(r, addr=normalize_addr(url, r.protocol))
    save_config(conf)


# -- add ----------------------------------------------------------------------------------------
@remote.command("add", short_help="Add a remote image server or machined.")
@click.argument("args", nargs=-1, required=True, metavar="[<name>] <url|token>")
@click.option("--protocol", type=click.Choice(["machined", "simplestreams"]),
              default="machined", show_default=True, help="Server protocol.")
@click.option("--accept-certificate", is_flag=True,
              help="Pin the server's certificate without asking.")
@click.option("--public", is_flag=True, help="Public image server: read-only, no trust.")
@click.option("--token", help="Trust token (from `mc config trust add` on the server).")
@click.option("--auth-type", type=click.Choice(["tls"]), default="tls", show_default=True,
              help="Authentication type.")
@pass_env
def add(env: Env, args: tuple[str, ...], protocol: str, accept_certificate: bool,
        public: bool, token: str | None, auth_type: str) -> None:
    """Add a remote: a simplestreams image server or another machined.

    \b
    URLs: https://host[:port] (machined: port 8443 by default), unix:// (this machined),
    unix:///path/to/unix.socket; simplestreams also http:// for local mirrors.
    A trust token alone (from `mc config trust add`) names the server and joins it.
    """
    from cli.remotes import check_name, save_config, with_remote
    from cli.trust_join import looks_like_token

    if len(args) > 2:
        raise click.UsageError("Too many arguments: expected [<name>] <url|token>")
    name, target = (args[0], args[1]) if len(args) == 2 else (None, args[0])
    positional_token = protocol == "machined" and looks_like_token(target)
    if protocol == "machined" and not positional_token and target.startswith("eyJ"):
        from cli.trust_join import parse_token

        parse_token(target)  # base64 JSON that is no valid token: say so, not "bad host"
    if name is None:
        if positional_token:
            raise click.UsageError("Give the remote a name: mc remote add <name> <token>")
        name = default_name(target)
    check_name(name)
    conf = env.config()
    if name in conf.remotes:
        raise CliError(f'The remote "{name}" already exists')
    if protocol == "simplestreams":
        if token:
            raise click.UsageError("--token is for machined remotes (simplestreams servers "
                                   "are public)")
        new, pem = _add_stream(conf, name, target, accept_certificate)
    elif positional_token:
        new, pem = _add_token(env, conf, name, target)
    else:
        new, pem = _add_machined(env, conf, name, target, accept_certificate, public, token)
    if pem:
        from cli.remotes import pin_certificate

        pin_certificate(conf, name, pem)
    save_config(with_remote(conf, new))


def default_name(target: str) -> str:
    """The name lxc gives a remote added without one: its host."""
    from urllib.parse import urlsplit

    try:
        host = urlsplit(target if "://" in target else f"https://{target}").hostname
    except ValueError:
        host = None
    if not host:
        raise click.UsageError("Give the remote a name: mc remote add <name> <url>")
    return host


def system_ca_verifies(url: str) -> bool:
    """Whether an https server's certificate verifies against the system CA store (with its
    host name). Unreachable servers are a CliError."""
    import socket
    import ssl

    from cli import tls

    host, port = tls.split_url(url)
    ctx = tls.client_context()
    try:
        sock = socket.create_connection((host, port), timeout=tls.CONNECT_TIMEOUT)
    except OSError as e:
        raise CliError(f"Cannot connect to {url}: {e.strerror or e}") from None
    try:
        with ctx.wrap_socket(sock, server_hostname=host):
            return True
    except ssl.SSLCertVerificationError:
        return False
    except ssl.SSLError as e:
        hint = " (is it a plain http:// server?)" if e.reason == "WRONG_VERSION_NUMBER" else ""
        raise CliError(f"TLS handshake with {url} failed: {e.reason or e}{hint}") from None
    except OSError as e:
        raise CliError(f"Cannot reach {url}: {e.strerror or e}") from None
    finally:
        sock.close()


def accept_certificate(url: str, accept: bool) -> str:
    """The certificate (PEM) of a server the system CA store does not vouch for, once the
    user accepted its fingerprint: --accept-certificate, or the lxc question on a terminal."""
    from cli import tls

    pem = tls.fetch_server_certificate(url)
    fingerprint = tls.fingerprint(pem)
    if not accept and not sys.stdin.isatty():
        raise CliError(f"The certificate of {url} is not trusted by this machine's CA store "
                       f"(fingerprint {fingerprint}); check the fingerprint and pass "
                       "--accept-certificate to pin it")
    click.echo(f"Certificate fingerprint: {fingerprint}")
    if accept:
        return pem
    answer = click.prompt("ok (y/n/[fingerprint])?", prompt_suffix=" ", default="",
                          show_default=False).strip()
    if answer == fingerprint:
        return pem
    if not answer or answer[0].lower() == "n":
        raise CliError("Server certificate NACKed by user")
    if answer[0].lower() != "y":
        raise CliError("Please type 'y', 'n' or the fingerprint")
    return pem


def https_port_url(addr: str) -> str:
    """https://host:port of an https URL (443 when it names none), for TLS probes."""
    from urllib.parse import urlsplit

    parts = urlsplit(addr)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"https://{host}:{parts.port or 443}"


def _add_stream(conf: ClientConfig, name: str, target: str, accept: bool
                ) -> tuple[Remote, str]:
    from cli import tls
    from cli.remotes import Remote, normalize_addr
    from cli.streams import check_index

    new = Remote(name, normalize_addr(target, "simplestreams"), "simplestreams", public=True)
    pem = ""
    if new.scheme == "https":
        probe = https_port_url(new.addr)
        if not system_ca_verifies(probe):
            pem = accept_certificate(probe, accept)
    ctx = tls.client_context(pem or None) if new.scheme == "https" else None
    check_index(new, ctx)
    return new, pem


def _add_machined(env: Env, conf: ClientConfig, name: str, target: str, accept: bool,
                  public: bool, token: str | None) -> tuple[Remote, str]:
    from cli import tls
    from cli.client import Client
    from cli.remotes import Remote, normalize_addr

    addr = normalize_addr(target, "machined")
    if addr.startswith("unix:"):
        if public or token:
            raise click.UsageError("--public and --token are for https remotes (a unix "
                                   "socket trusts whoever can open it)")
        path = addr[len("unix://"):] or None
        _server_info(Client(path=path, debug=env.debug))
        return Remote(name, addr, "machined"), ""
    pem = ""
    if not system_ca_verifies(addr):
        # a token names the server's certificate: that is the user's acceptance
        pem = _token_certificate(addr, token) if token else accept_certificate(addr, accept)
    info = _server_info(Client(url=addr, ssl_context=tls.client_context(pem or None),
                               debug=env.debug), addr)
    if public:
        return Remote(name, addr, "machined", public=True), pem
    if info.get("auth") == "trusted" or _trusted_already(env, conf, addr, pem):
        pass  # e.g. added before with `mc config trust add-certificate`
    elif token:
        _join(env, addr, token, pem)
    else:
        if not sys.stdin.isatty():
            raise CliError(f"{addr} does not trust this client: pass --token <token> (from "
                           "`mc config trust add` on the server), or --public for its public "
                           "images only")
        _join(env, addr, click.prompt(f"Trust token for {name}").strip(), pem)
    return Remote(name, addr, "machined", auth_type="tls"), pem


def _token_certificate(addr: str, token: str) -> str:
    from cli import tls
    from cli.trust_join import parse_token

    pem = tls.fetch_server_certificate(addr)
    got, named = tls.fingerprint(pem), parse_token(token).fingerprint
    if got != named:
        raise CliError(f"The certificate of {addr} ({got[:12]}...) is not the one the trust "
                       f"token names ({named[:12]}...): is this the right server?")
    return pem


NOT_MACHINED = ("{where} is not a machined server ({what}); for an image server add it with "
                "--protocol simplestreams")


def _server_info(client: Client, where: str = "The server") -> dict[str, Any]:
    """GET /1.0 of a would-be remote (a CliError when it is not a machined/LXD API)."""
    from cli.errors import ApiError

    try:
        info = client.get("/1.0")
    except ApiError as e:
        # No API error envelope (a web page, a non-JSON body): some other web server
        if e.message.startswith("machined answered HTTP"):
            raise CliError(NOT_MACHINED.format(where=where, what=f"GET /1.0 answered HTTP "
                                               f"{e.status}")) from None
        if e.message.startswith("Invalid response from machined"):
            raise CliError(NOT_MACHINED.format(where=where, what="GET /1.0 is not JSON")) \
                from None
        raise
    finally:
        client.close()
    if not isinstance(info, dict) or "api_version" not in info and "auth" not in info:
        raise CliError(NOT_MACHINED.format(where=where, what="GET /1.0 is no API answer"))
    return info


def _trusted_already(env: Env, conf: ClientConfig, addr: str, pem: str) -> bool:
    """Whether the server already trusts our certificate (added with `mc config trust
    add-certificate`)."""
    from cli import tls
    from cli.client import Client

    ctx = tls.client_context(pem or None, tls.client_cert_paths(conf.directory))
    try:
        return _server_info(Client(url=addr, ssl_context=ctx, debug=env.debug)).get("auth") \
            == "trusted"
    except CliError:
        return False


def _join(env: Env, addr: str, token: str, pem: str) -> None:
    from cli import tls
    from cli.trust_join import join, parse_token

    parsed = parse_token(token)
    server_pem = pem or tls.fetch_server_certificate(addr)
    crt, key = tls.client_cert_paths(env.config().directory)
    join(addr, parsed, server_pem, crt, key)
    env.say(f"Client certificate now trusted by server: {addr}")


def _add_token(env: Env, conf: ClientConfig, name: str, text: str) -> tuple[Remote, str]:
    """`mc remote add <name> <token>`: the token names the server (addresses) and its
    certificate (fingerprint), so the certificate is pinned without asking."""
    from cli import tls
    from cli.remotes import Remote, normalize_addr
    from cli.trust_join import find_server, join, parse_token

    token = parse_token(text)
    url, pem = find_server(token)
    if not _trusted_already(env, conf, url, pem):
        crt, key = tls.client_cert_paths(conf.directory)
        join(url, token, pem, crt, key)
        env.say(f"Client certificate now trusted by server: {name}")
    return Remote(name, normalize_addr(url, "machined"), "machined", auth_type="tls"), pem


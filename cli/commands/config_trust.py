"""`mc config trust ...`: the client certificates a server's HTTPS API trusts (as lxc).

    mc config trust add [<remote>:]<name>           issue a join token for a new client
    mc config trust add-certificate [<remote>:] <cert file> [--name N]
    mc config trust list [<remote>:]                 (-f table|csv|json|yaml|compact)
    mc config trust show [<remote>:]<fingerprint>
    mc config trust remove [<remote>:]<fingerprint>  (a unique prefix is enough)
    mc config trust list-tokens [<remote>:] ; mc config trust revoke-token [<remote>:]<name>
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cli.client import Client
from cli.context import Env, pass_env
from cli.errors import CliError
from cli.lazy import LazyGroup
from cli.output import (
    format_option,
    format_time,
    format_upload_date,
    parse_format,
    render,
    render_yaml,
)
from cli.params import url_part


def _target(env: Env, arg: str | None, missing: str = "") -> tuple[Client, str]:
    """The client of `[<remote>:]<object>` and the object ("" when only a remote is given;
    a usage error "Missing <missing>" instead when `missing` names a required object)."""
    client, obj = (env.client(), "") if arg is None else _split_target(env, arg)
    if missing and not obj:
        raise click.UsageError(f"Missing {missing}")
    return client, obj


def _split_target(env: Env, arg: str) -> tuple[Client, str]:
    remote, obj = env.split(arg)
    return env.client(remote), obj


def _remote_only(env: Env, arg: str | None) -> Client:
    client, rest = _target(env, arg)
    if rest:
        raise click.UsageError(f'Unexpected argument "{arg}": expected [<remote>:]')
    return client


@click.group("trust", cls=LazyGroup, aliases={"ls": "list", "rm": "remove"})
def trust() -> None:
    """Manage the client certificates the HTTPS API trusts.

    \b
      mc config set core.https_address 127.0.0.1:8443
      mc config trust add laptop          # prints a token; on the laptop:
      mc remote add server <token>
      mc config trust list ; mc config trust remove <fingerprint>

    A client with a trusted certificate has full control of the server; one without may
    only list and download public images (and join with a token).
    """


@trust.command("add")
@click.argument("name", required=False, metavar="[<remote>:]<name>")
@pass_env
def add(env: Env, name: str | None) -> None:
    """Issue a one-time token with which the client NAME joins.

    The token holds the server's address and certificate fingerprint and a secret; it
    expires after core.remote_token_expiry (default 1d). On the client:
    mc remote add <remote-name> <token>. In scripts: TOKEN=$(mc -q config trust add NAME).
    """
    client, client_name = _target(env, name)
    if not client_name:
        if not sys.stdin.isatty():
            raise click.UsageError("Missing the client's name: mc config trust add <name>")
        client_name = click.prompt("Please provide client name", type=str).strip()
    meta = client.post("/1.0/certificates", {"type": "client", "token": True,
                                             "name": client_name})
    env.say(f"Client {client_name} certificate add token:")  # mc -q: the bare token
    click.echo(meta["token"])


@trust.command("add-certificate")
@click.argument("args", nargs=-1, required=True, metavar="[<remote>:] <cert file>")
@click.option("--name", help="Name of the certificate (default: the file name).")
@pass_env
def add_certificate(env: Env, args: tuple[str, ...], name: str | None) -> None:
    """Trust the client certificate in a PEM file."""
    if len(args) > 2:
        raise click.UsageError("Expected [<remote>:] <cert file>")
    remote = args[0] if len(args) == 2 else None
    if remote is not None and not remote.endswith(":"):
        raise click.UsageError(f'Expected a remote like "lab:" before the file, not "{remote}"')
    path = Path(args[-1])
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"Cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    default = path.name.removesuffix(".crt").removesuffix(".pem")
    _remote_only(env, remote).post("/1.0/certificates", {
        "type": "client", "certificate": pem, "name": name or default})


@trust.command("list")
@click.argument("remote", required=False, metavar="[<remote>:]")
@format_option()
@pass_env
def list_cmd(env: Env, remote: str | None, fmt: str) -> None:
    """List the trusted certificates."""
    parse_format(fmt)
    certs = _remote_only(env, remote).get("/1.0/certificates?recursion=1") or []
    rows = [_row(c) for c in certs]
    click.echo(render(fmt, ["TYPE", "NAME", "COMMON NAME", "FINGERPRINT", "ISSUE DATE",
                            "EXPIRY DATE"], rows, certs), nl=False)


def _row(cert: dict[str, Any]) -> list[str]:
    common, issued, expires = _details(str(cert.get("certificate") or ""))
    return [str(cert.get("type", "")), str(cert.get("name", "")), common,
            str(cert.get("fingerprint", ""))[:12], issued, expires]


def _details(pem: str) -> tuple[str, str, str]:
    """(common name, issue date, expiry date) read from the certificate itself, as lxc."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return "", "", ""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (str(names[0].value) if names else "",
            format_upload_date(cert.not_valid_before_utc.isoformat()),
            format_upload_date(cert.not_valid_after_utc.isoformat()))


@trust.command("show")
@click.argument("fingerprint", metavar="[<remote>:]<fingerprint>")
@pass_env
def show(env: Env, fingerprint: str) -> None:
    """Show a trusted certificate (YAML)."""
    client, fp = _target(env, fingerprint, "the certificate's fingerprint")
    cert = client.get(f"/1.0/certificates/{url_part(fp)}")
    shown = {k: cert.get(k) for k in ("name", "type", "restricted", "projects", "fingerprint",
                                      "created_at") if k in cert}
    pem = str(cert.get("certificate") or "").strip()
    # The PEM as a YAML literal block, as lxc shows it (safe_dump would quote it).
    block = "certificate: |\n" + "".join(f"  {line}\n" for line in pem.splitlines())
    click.echo(render_yaml(shown) + (block if pem else ""), nl=False)


@trust.command("remove", short_help="Stop trusting a certificate.")
@click.argument("fingerprint", metavar="[<remote>:]<fingerprint>")
@pass_env
def remove(env: Env, fingerprint: str) -> None:
    """Stop trusting a certificate (its fingerprint, or a unique prefix of it).

    Its client loses access at once, also on connections already open.
    """
    client, fp = _target(env, fingerprint, "the certificate's fingerprint")
    client.delete(f"/1.0/certificates/{url_part(fp)}")


@trust.command("list-tokens", short_help="List the join tokens not used yet.")
@click.argument("remote", required=False, metavar="[<remote>:]")
@format_option()
@pass_env
def list_tokens(env: Env, remote: str | None, fmt: str) -> None:
    """List the join tokens not used yet (the tokens themselves are not kept)."""
    parse_format(fmt)
    toks = _remote_only(env, remote).get("/1.0/certificates/tokens") or []
    rows = [[str(t.get("name", "")), format_time(t.get("expires_at"))] for t in toks]
    click.echo(render(fmt, ["NAME", "EXPIRES AT"], rows, toks), nl=False)


@trust.command("revoke-token")
@click.argument("name", metavar="[<remote>:]<name>")
@pass_env
def revoke_token(env: Env, name: str) -> None:
    """Revoke the pending join tokens issued for NAME."""
    client, obj = _target(env, name, "the client's name")
    client.delete(f"/1.0/certificates/tokens/{url_part(obj)}")

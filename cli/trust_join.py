"""Joining a machined server with a trust token (`mc remote add <name> <token>`).

The token (printed by `mc config trust add` on the server) is base64 JSON {client_name,
fingerprint, addresses, secret, expires_at}. The client:
  1. connects to the token's addresses in turn, without verification, and keeps the first
     server whose certificate has the token's fingerprint (find_server);
  2. POSTs /1.0/certificates {trust_token, certificate: our client certificate, name} over a
     connection pinned to that certificate and presenting no client certificate (a server
     refuses the handshake of a certificate it does not trust yet);
  3. reconnects with its certificate and checks that GET /1.0 now says "trusted".
The caller then stores the remote and pins the server certificate.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.errors import ApiError, CliError


@dataclass(frozen=True)
class Token:
    client_name: str
    fingerprint: str
    addresses: list[str]
    secret: str
    expires_at: str


def looks_like_token(text: str) -> bool:
    """Whether a `mc remote add` argument is a token rather than a URL or host."""
    try:
        parse_token(text)
    except CliError:
        return False
    return True


def parse_token(text: str) -> Token:
    compact = "".join(text.split())
    try:
        data = json.loads(base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True))
    except (binascii.Error, ValueError):
        raise CliError("This is not a trust token (expected the text printed by mc config "
                       "trust add on the server)") from None
    if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("client_name", "fingerprint", "secret")):
        raise CliError("This is not a trust token (client_name, fingerprint or secret missing)")
    addresses = data.get("addresses") or []
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise CliError("The trust token's addresses are not a list of host:port")
    fingerprint = data["fingerprint"].lower()
    if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
        raise CliError("The trust token's server fingerprint is not 64 hex characters")
    return Token(data["client_name"], fingerprint, list(addresses), data["secret"],
                 str(data.get("expires_at") or ""))


def find_server(token: Token, timeout: float = 10.0) -> tuple[str, str]:
    """(url, certificate PEM) of the first of the token's addresses that answers with the
    certificate the token names."""
    from cli import tls

    if not token.addresses:
        raise CliError("The trust token lists no address: give the server's URL too "
                       "(mc remote add <name> https://host:port --token <token>)")
    problems = []
    for address in token.addresses:
        url = address if address.startswith("https://") else f"https://{address}"
        try:
            pem = tls.fetch_server_certificate(url, timeout=timeout)
        except CliError as e:
            problems.append(e.message)
            continue
        got = tls.fingerprint(pem)
        if got == token.fingerprint:
            return url, pem
        problems.append(f"{url} presented certificate {got[:12]}..., not the token's "
                        f"{token.fingerprint[:12]}...")
    raise CliError("No address of the trust token reached the server it names: "
                   + "; ".join(problems))


def join(url: str, token: str | Token, server_pem: str, client_crt: Path, client_key: Path,
         name: str = "") -> dict[str, Any]:
    """Have the server at `url` (whose certificate is `server_pem`) trust our certificate;
    returns its GET /1.0 as a trusted client."""
    from cli import tls
    from cli.client import Client

    tok = token if isinstance(token, Token) else parse_token(token)
    if tls.fingerprint(server_pem) != tok.fingerprint:
        raise CliError(f"The certificate of {url} is not the one the trust token names")
    body = {"type": "client", "trust_token": tok.secret, "name": name or tok.client_name,
            "certificate": Path(client_crt).read_text()}
    anonymous = Client(url=url, ssl_context=tls.client_context(server_pem))
    try:
        anonymous.post("/1.0/certificates", body)
    except ApiError as e:
        raise CliError(f"{url} refused the trust token: {e.message}") from None
    finally:
        anonymous.close()
    trusted = Client(url=url, ssl_context=tls.client_context(server_pem, (client_crt,
                                                                          client_key)))
    try:
        info = trusted.get("/1.0")
    finally:
        trusted.close()
    if not isinstance(info, dict) or info.get("auth") != "trusted":
        raise CliError(f"{url} accepted the token but does not trust this client's "
                       "certificate")
    return info

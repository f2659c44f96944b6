"""Join tokens (pure, stdlib only): what `mc config trust add` prints and `mc remote add
<name> <token>` consumes.

A token is the base64 of JSON `{client_name, fingerprint, addresses, secret, expires_at}`
(LXD's api.CertificateAddToken field names): the server certificate's fingerprint lets the
client pin the server before it sends anything, `addresses` are where to reach it, `secret` is
256 random bits. The daemon stores only sha256(secret), so a copy of its database cannot be
used to join. Tokens are single use and expire (core.remote_token_expiry, default 1 day: LXD's
default is never, which leaves forgotten tokens usable for ever).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime
import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass

DEFAULT_EXPIRY = "1d"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class TokenError(ValueError):
    """A token that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class Token:
    client_name: str
    fingerprint: str  # sha256 of the server certificate (DER)
    addresses: list[str]  # host:port, IPv6 in brackets
    secret: str
    expires_at: str  # ISO 8601 UTC ("...Z"), "" for never

    def encode(self) -> str:
        data = json.dumps(asdict(self), separators=(",", ":")).encode()
        return base64.b64encode(data).decode()


def make(client_name: str, fingerprint: str, addresses: list[str], now: datetime.datetime,
         expiry: dict[str, int]) -> Token:
    """A new token with a fresh secret, valid from `now` for `expiry` (parse_expiry's dict)."""
    return Token(client_name=client_name, fingerprint=fingerprint, addresses=list(addresses),
                 secret=new_secret(), expires_at=iso(expires_at(now, expiry)))


def new_secret() -> str:
    return secrets.token_hex(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def decode(text: str) -> Token:
    """The token a user pasted (surrounding white space ignored)."""
    compact = "".join(text.split())
    if not compact:
        raise TokenError("The trust token is empty")
    try:
        raw = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise TokenError("This is not a trust token (expected the base64 text printed by "
                         "mc config trust add)") from None
    if not isinstance(data, dict):
        raise TokenError("This is not a trust token (its JSON is not an object)")
    for key in ("client_name", "fingerprint", "secret"):
        if not isinstance(data.get(key), str):
            raise TokenError(f"The trust token has no {key}")
    addresses = data.get("addresses") or []
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise TokenError("The trust token's addresses are not a list of host:port")
    fingerprint = data["fingerprint"].lower()
    if not _HEX64.fullmatch(fingerprint):
        raise TokenError("The trust token's server fingerprint is not 64 hex characters")
    if not data["secret"]:
        raise TokenError("The trust token has an empty secret")
    expires = data.get("expires_at") or ""
    if not isinstance(expires, str):
        raise TokenError("The trust token's expires_at is not a time")
    return Token(client_name=data["client_name"], fingerprint=fingerprint,
                 addresses=list(addresses), secret=data["secret"], expires_at=expires)


def expires_at(now: datetime.datetime, expiry: dict[str, int]) -> datetime.datetime:
    """`now` plus a parsed expiry ({"days": 1, "hours": 12} from config.validate.parse_expiry);
    months and years are calendar months and years (Jan 31 + 1 month = Feb 28/29)."""
    months = expiry.get("months", 0) + 12 * expiry.get("years", 0)
    then = _add_months(now, months) if months else now
    return then + datetime.timedelta(
        seconds=expiry.get("seconds", 0), minutes=expiry.get("minutes", 0),
        hours=expiry.get("hours", 0), days=expiry.get("days", 0), weeks=expiry.get("weeks", 0))


def _add_months(when: datetime.datetime, months: int) -> datetime.datetime:
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def iso(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    """An ISO 8601 time as stored (naive means UTC)."""
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def expired(expires: str, now: datetime.datetime) -> bool:
    return bool(expires) and parse_time(expires) <= now


def addresses_for(listen: str, local_ips: list[str]) -> list[str]:
    """Where clients can reach a daemon listening on `listen` (core.https_address): the
    address itself when it names a host, else (a wildcard) every given local address with the
    port. Default port 8443, as LXD."""
    host, port = split_listen(listen)
    if host not in ("", "0.0.0.0", "::"):
        return [join_host_port(host, port)]
    wanted = [ip for ip in local_ips if host != "0.0.0.0" or ":" not in ip]
    return [join_host_port(ip, port) for ip in wanted]


def split_listen(listen: str) -> tuple[str, int]:
    """`[::1]:8443` -> ("::1", 8443); `:8443` -> ("", 8443); `host` -> ("host", 8443)."""
    if listen.startswith("["):
        host, _, rest = listen[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 8443
    if listen.count(":") > 1:
        return listen, 8443  # a bare IPv6 address
    host, sep, port = listen.partition(":")
    return host, int(port) if sep and port else 8443


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

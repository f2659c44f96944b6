"""Trusted TLS client certificates and pending join tokens (only sha256 of each secret)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlite_utils import Database

from machined.errors import BadRequest, Conflict, Forbidden, NotFound

_COLS = "fingerprint, name, type, certificate, created_at"


@dataclass
class CertificateRecord:
    fingerprint: str
    name: str
    certificate: str  # PEM
    created_at: str
    type: str = "client"

    def to_json(self) -> dict[str, object]:
        """LXD's api.Certificate (restricted/projects: this daemon has no projects)."""
        out: dict[str, object] = asdict(self)
        out.update(restricted=False, projects=[], description="")
        return out


@dataclass
class TokenRecord:
    secret_sha256: str
    name: str
    created_at: str
    expires_at: str


def _record(row: tuple) -> CertificateRecord:  # type: ignore[type-arg]
    return CertificateRecord(fingerprint=row[0], name=row[1], type=row[2], certificate=row[3],
                             created_at=row[4])


def list_all(db: Database) -> list[CertificateRecord]:
    rows = db.execute(f"SELECT {_COLS} FROM certificates ORDER BY name, fingerprint").fetchall()
    return [_record(r) for r in rows]


def fingerprints(db: Database) -> set[str]:
    return {r[0] for r in db.execute("SELECT fingerprint FROM certificates").fetchall()}


def is_trusted(db: Database, fingerprint: str) -> bool:
    return db.execute("SELECT 1 FROM certificates WHERE fingerprint = ?",
                      [fingerprint]).fetchone() is not None


def find(db: Database, prefix: str) -> CertificateRecord:
    """A certificate by its fingerprint or a unique prefix of it (as lxc config trust)."""
    prefix = prefix.lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise NotFound(f"Certificate {prefix!r} not found (give its sha256 fingerprint or a "
                       "prefix of it: mc config trust list)")
    rows = db.execute(f"SELECT {_COLS} FROM certificates WHERE substr(fingerprint, 1, ?) = ?",
                      [len(prefix), prefix]).fetchall()
    if not rows:
        raise NotFound(f"Certificate {prefix!r} not found")
    if len(rows) > 1:
        raise BadRequest(f"Certificate fingerprint prefix {prefix!r} matches "
                         f"{len(rows)} certificates; give more of it")
    return _record(rows[0])


def add(db: Database, rec: CertificateRecord) -> None:
    with db.atomic():
        _insert(db, rec)


def _insert(db: Database, rec: CertificateRecord) -> None:
    if is_trusted(db, rec.fingerprint):
        raise Conflict(f"Certificate {rec.fingerprint[:12]} is already trusted")
    db.execute(f"INSERT INTO certificates ({_COLS}) VALUES (?, ?, ?, ?, ?)",
               [rec.fingerprint, rec.name, rec.type, rec.certificate, rec.created_at])


def delete(db: Database, fingerprint: str) -> None:
    with db.atomic():
        if db.execute("DELETE FROM certificates WHERE fingerprint = ?",
                      [fingerprint]).rowcount == 0:
            raise NotFound(f"Certificate {fingerprint!r} not found")


# -- join tokens --------------------------------------------------------------------------
def add_token(db: Database, tok: TokenRecord) -> None:
    with db.atomic():
        db.execute("INSERT INTO trust_tokens (secret_sha256, name, created_at, expires_at) "
                   "VALUES (?, ?, ?, ?)",
                   [tok.secret_sha256, tok.name, tok.created_at, tok.expires_at])


def list_tokens(db: Database) -> list[TokenRecord]:
    rows = db.execute("SELECT secret_sha256, name, created_at, expires_at FROM trust_tokens "
                      "ORDER BY created_at").fetchall()
    return [TokenRecord(*r) for r in rows]


def delete_tokens(db: Database, name: str) -> int:
    """Revoke every pending token issued for `name`; how many there were."""
    with db.atomic():
        return int(db.execute("DELETE FROM trust_tokens WHERE name = ?", [name]).rowcount)


def prune_tokens(db: Database, now_iso: str) -> None:
    """Forget expired tokens (ISO 8601 UTC strings compare in time order)."""
    with db.atomic():
        db.execute("DELETE FROM trust_tokens WHERE expires_at != '' AND expires_at <= ?",
                   [now_iso])


def join(db: Database, secret_sha256: str, now_iso: str, rec: CertificateRecord) -> str:
    """Consume the token and trust `rec` in one transaction: a token admits one certificate
    once, even under concurrent requests, and a refused add (the certificate is already
    trusted) leaves the token usable. The certificate is named as the token (the name the
    administrator chose), else `rec.name`. Returns the name."""
    with db.atomic():
        row = db.execute("DELETE FROM trust_tokens WHERE secret_sha256 = ? "
                         "RETURNING name, expires_at", [secret_sha256]).fetchone()
        if row is None:
            raise Forbidden("The trust token is not valid (unknown or already used): ask for "
                            "a new one (mc config trust add on the server)")
        name, expires = row
        if expires and expires <= now_iso:
            raise _Expired(expires)  # rolled back: prune_tokens forgets it
        rec.name = name or rec.name
        _insert(db, rec)
        return rec.name


class _Expired(Forbidden):
    def __init__(self, expires: str) -> None:
        super().__init__(f"The trust token expired at {expires}: ask for a new one (mc config "
                         "trust add on the server)")

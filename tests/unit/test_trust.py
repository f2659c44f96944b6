"""Trust for the HTTPS API: join tokens, the untrusted allow-list, certificate parsing and
fingerprints, the certificates/tokens tables, and the client's side of tokens and pins."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from cli import tls as cli_tls
from cli import trust_join
from cli.errors import CliError
from machined.api.access import untrusted_may
from machined.db import certificates as db_certs
from machined.db import open_database
from machined.errors import BadRequest, Conflict, Forbidden, NotFound
from machined.trust import certs, tokens

UTC = datetime.UTC
NOW = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


# -- tokens --------------------------------------------------------------------------------
def _token(**kw):
    base = dict(client_name="laptop", fingerprint="ab" * 32, addresses=["10.0.0.2:8443"],
                secret=tokens.new_secret(), expires_at="2026-02-01T12:00:00Z")
    base.update(kw)
    return tokens.Token(**base)


def test_token_round_trip_and_lxd_field_names():
    tok = _token()
    text = tok.encode()
    assert json.loads(base64.b64decode(text)) == {
        "client_name": "laptop", "fingerprint": "ab" * 32, "addresses": ["10.0.0.2:8443"],
        "secret": tok.secret, "expires_at": "2026-02-01T12:00:00Z"}
    assert tokens.decode(f"  {text[:10]}\n{text[10:]} ") == tok  # pasted with line breaks
    assert len(tok.secret) == 64 and tokens.new_secret() != tok.secret


def test_make_gives_a_fresh_secret_and_the_expiry():
    one = tokens.make("a", "ab" * 32, ["h:1"], NOW, {"hours": 1})
    two = tokens.make("a", "ab" * 32, ["h:1"], NOW, {"hours": 1})
    assert one.secret != two.secret and one.expires_at == "2026-01-31T13:00:00Z"
    assert tokens.secret_hash(one.secret) == hashlib.sha256(one.secret.encode()).hexdigest()


def test_client_reads_the_daemons_tokens():
    tok = _token(addresses=["[fd00::2]:8443"])
    parsed = trust_join.parse_token(tok.encode().rstrip("="))  # padding lost in a copy
    assert (parsed.client_name, parsed.fingerprint, parsed.addresses, parsed.secret) == (
        tok.client_name, tok.fingerprint, tok.addresses, tok.secret)
    assert trust_join.looks_like_token(tok.encode())
    assert not trust_join.looks_like_token("https://10.0.0.2:8443")


@pytest.mark.parametrize("text,message", [
    ("", "empty"),
    ("not base64 !!", "not a trust token"),
    (base64.b64encode(b"[1]").decode(), "not an object"),
    (base64.b64encode(b'{"client_name": "x", "fingerprint": "ab"}').decode(), "no secret"),
    (base64.b64encode(json.dumps({"client_name": "x", "fingerprint": "zz" * 32,
                                  "secret": "s"}).encode()).decode(), "64 hex"),
    (base64.b64encode(json.dumps({"client_name": "x", "fingerprint": "ab" * 32, "secret": "s",
                                  "addresses": "10.0.0.1"}).encode()).decode(), "addresses"),
])
def test_bad_tokens_say_what_is_wrong(text, message):
    with pytest.raises(tokens.TokenError, match=message):
        tokens.decode(text)
    with pytest.raises(CliError):
        trust_join.parse_token(text)


def test_token_expiry_arithmetic():
    assert tokens.expires_at(NOW, {"days": 1}) == NOW + datetime.timedelta(days=1)
    assert tokens.expires_at(NOW, {"minutes": 15, "seconds": 5}) == NOW + datetime.timedelta(
        minutes=15, seconds=5)
    # calendar months: Jan 31 + 1 month is the end of February
    assert tokens.expires_at(NOW, {"months": 1}).date() == datetime.date(2026, 2, 28)
    assert tokens.expires_at(NOW, {"years": 2, "months": 13}).date() == datetime.date(
        2029, 2, 28)
    assert tokens.iso(NOW) == "2026-01-31T12:00:00Z"
    assert tokens.expired("2026-01-31T12:00:00Z", NOW)
    assert not tokens.expired("2026-01-31T12:00:01Z", NOW)
    assert not tokens.expired("", NOW)


@pytest.mark.parametrize("listen,expected", [
    ("127.0.0.1:9443", ["127.0.0.1:9443"]),
    ("127.0.0.1", ["127.0.0.1:8443"]),
    ("[::1]:9443", ["[::1]:9443"]),
    ("::1", ["[::1]:8443"]),
    ("host.example:9443", ["host.example:9443"]),
    (":9443", ["10.0.0.2:9443", "[fd00::2]:9443"]),
    ("[::]:9443", ["10.0.0.2:9443", "[fd00::2]:9443"]),
    ("0.0.0.0:9443", ["10.0.0.2:9443"]),  # IPv4 only
])
def test_token_addresses(listen, expected):
    assert tokens.addresses_for(listen, ["10.0.0.2", "fd00::2"]) == expected


# -- allow-list ----------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/1.0"), ("GET", "/1.0/images"),
    ("GET", "/1.0/images/" + "a" * 64), ("GET", "/1.0/images/abc123"),
    ("GET", "/1.0/images/abc123/export"), ("GET", "/1.0/images/aliases"),
    ("GET", "/1.0/images/aliases/busybox"), ("GET", "/1.0/images/aliases/debian/12"),
    ("GET", "/1.0/images/aliases/debian%2F12"), ("POST", "/1.0/certificates"),
])
def test_untrusted_may(method, path):
    assert untrusted_may(method, path)


@pytest.mark.parametrize("method,path", [
    ("POST", "/1.0/instances"), ("GET", "/1.0/instances"), ("GET", "/1.0/instances/c1"),
    ("PUT", "/1.0"), ("PATCH", "/1.0"), ("GET", "/1.0/"), ("HEAD", "/1.0"),
    ("GET", "/1.0/operations"), ("GET", "/1.0/operations/x/wait"),
    ("GET", "/1.0/certificates"), ("DELETE", "/1.0/certificates/ab"),
    ("GET", "/1.0/certificates/tokens"), ("POST", "/1.0/images"),
    ("DELETE", "/1.0/images/abc"), ("PUT", "/1.0/images/abc"),
    ("POST", "/1.0/images/abc/refresh"), ("GET", "/1.0/images/abc/secret"),
    ("GET", "/1.0/images/abc/export/x"), ("POST", "/1.0/images/aliases"),
    ("DELETE", "/1.0/images/aliases/busybox"), ("GET", "/1.0/profiles"),
    ("GET", "/1.0/images/"), ("GET", "/1.0/imagesx"), ("GET", "/1.0x"),
    ("POST", "/1.0/certificates/ab"), ("GET", "//1.0/instances"), ("get", "/1.0"),
])
def test_untrusted_may_not(method, path):
    assert not untrusted_may(method, path)


# -- certificates --------------------------------------------------------------------------
def _self_signed(purpose=ExtendedKeyUsageOID.CLIENT_AUTH, days=30, start=-1):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "someone")])
    now = datetime.datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=start))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if purpose is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    from cryptography.hazmat.primitives import hashes
    return builder.sign(key, hashes.SHA256())


def test_fingerprint_of_every_accepted_form():
    cert = _self_signed()
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    want = hashlib.sha256(der).hexdigest()
    b64 = base64.b64encode(der).decode()
    assert {certs.fingerprint(x) for x in (cert, der, pem, pem.decode(), b64)} == {want}
    assert cli_tls.fingerprint(pem.decode()) == cli_tls.fingerprint(der) == want
    assert certs.common_name(cert) == "someone"


@pytest.mark.parametrize("data,message", [
    ("", "empty"),
    ("hello there", "neither PEM nor base64"),
    (base64.b64encode(b"\x30\x03abc").decode(), "not a valid X.509"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a valid PEM"),
])
def test_bad_certificates_say_what_is_accepted(data, message):
    with pytest.raises(BadRequest, match=message):
        certs.parse_certificate(data)


def test_a_chain_is_refused():
    pem = _self_signed().public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(BadRequest, match="holds 2 certificates"):
        certs.parse_certificate(pem + pem)


def test_client_certificates_that_could_never_log_in_are_refused():
    now = datetime.datetime.now(UTC)
    certs.check_client_certificate(_self_signed(), now)
    certs.check_client_certificate(_self_signed(purpose=None), now)  # no EKU: any purpose
    with pytest.raises(BadRequest, match="clientAuth"):
        certs.check_client_certificate(_self_signed(ExtendedKeyUsageOID.SERVER_AUTH), now)
    with pytest.raises(BadRequest, match="expired"):
        certs.check_client_certificate(_self_signed(days=-1, start=-3), now)
    with pytest.raises(BadRequest, match="not valid before"):
        certs.check_client_certificate(_self_signed(start=2, days=5), now)


def test_server_certificate_is_lxd_like_and_made_once(tmp_path):
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    certs.ensure_server_certificate(crt, key, "192.0.2.7")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp384r1"
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=3649) < life < datetime.timedelta(days=3651)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.7" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    # the key matches, and a second call keeps the pair
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    before = crt.read_bytes()
    certs.ensure_server_certificate(crt, key)
    assert crt.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_lone_key_is_replaced(tmp_path):
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    key.write_text("half-written")
    certs.ensure_server_certificate(crt, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)


def test_client_certificate_is_made_on_first_need(tmp_path):
    crt, key = cli_tls.client_cert_paths(tmp_path / "conf")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    certs.check_client_certificate(cert, datetime.datetime.now(UTC))  # the daemon takes it
    assert cli_tls.client_cert_paths(tmp_path / "conf") == (crt, key)
    assert cli_tls.fingerprint(crt.read_text()) == certs.fingerprint(crt.read_bytes())


def test_client_contexts(tmp_path):
    crt, key = cli_tls.client_cert_paths(tmp_path)
    pem = crt.read_text()
    pinned = cli_tls.client_context(pem, (crt, key))
    assert pinned.pinned == certs.fingerprint(pem) and pinned.client_cert
    assert not pinned.check_hostname and pinned.verify_mode == ssl.CERT_REQUIRED
    system = cli_tls.client_context()
    assert system.pinned == "" and not system.client_cert and system.check_hostname
    with pytest.raises(CliError, match="not a valid PEM"):
        cli_tls.client_context("garbage")
    with pytest.raises(CliError, match="expected https://host"):
        cli_tls.split_url("http://x:1")
    assert cli_tls.split_url("https://[::1]") == ("::1", 8443)


# -- the tables ----------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "machined.db")
    yield database
    database.close()


def _rec(fp, name="c"):
    return db_certs.CertificateRecord(fingerprint=fp, name=name, certificate="PEM",
                                      created_at="2026-01-01T00:00:00Z")


def test_certificates_by_prefix(db):
    db_certs.add(db, _rec("ab" * 32, "one"))
    db_certs.add(db, _rec("ac" * 32, "two"))
    with pytest.raises(Conflict, match="already trusted"):
        db_certs.add(db, _rec("ab" * 32))
    assert db_certs.find(db, "ABAB").name == "one"
    with pytest.raises(BadRequest, match="matches 2"):
        db_certs.find(db, "a")
    for bad in ("ff", "zz", "", "%"):
        with pytest.raises(NotFound):
            db_certs.find(db, bad)
    assert db_certs.is_trusted(db, "ab" * 32) and not db_certs.is_trusted(db, "ab")
    db_certs.delete(db, "ab" * 32)
    assert [r.name for r in db_certs.list_all(db)] == ["two"]
    with pytest.raises(NotFound):
        db_certs.delete(db, "ab" * 32)


def _tok(db, secret, name="joiner", expires="2026-02-01T00:00:00Z"):
    db_certs.add_token(db, db_certs.TokenRecord(tokens.secret_hash(secret), name,
                                                "2026-01-01T00:00:00Z", expires))


def test_a_token_admits_one_certificate_once(db):
    _tok(db, "s1")
    name = db_certs.join(db, tokens.secret_hash("s1"), "2026-01-15T00:00:00Z",
                         _rec("ab" * 32, "from-body"))
    assert name == "joiner" and db_certs.find(db, "ab").name == "joiner"
    with pytest.raises(Forbidden, match="unknown or already used"):
        db_certs.join(db, tokens.secret_hash("s1"), "2026-01-15T00:00:00Z", _rec("cd" * 32))
    assert not db_certs.is_trusted(db, "cd" * 32) and db_certs.list_tokens(db) == []


def test_an_expired_token_is_refused_and_pruned(db):
    _tok(db, "s2", expires="2026-01-10T00:00:00Z")
    with pytest.raises(Forbidden, match="expired at 2026-01-10"):
        db_certs.join(db, tokens.secret_hash("s2"), "2026-01-15T00:00:00Z", _rec("ab" * 32))
    assert not db_certs.is_trusted(db, "ab" * 32)
    db_certs.prune_tokens(db, "2026-01-15T00:00:00Z")
    assert db_certs.list_tokens(db) == []


def test_a_refused_add_leaves_the_token_usable(db):
    db_certs.add(db, _rec("ab" * 32))
    _tok(db, "s3")
    with pytest.raises(Conflict):
        db_certs.join(db, tokens.secret_hash("s3"), "2026-01-15T00:00:00Z", _rec("ab" * 32))
    assert [t.name for t in db_certs.list_tokens(db)] == ["joiner"]
    assert db_certs.delete_tokens(db, "joiner") == 1 and db_certs.list_tokens(db) == []


# -- mc config trust without a daemon --------------------------------------------------------
def test_config_trust_help_and_usage_errors():
    from click.testing import CliRunner

    from cli.main import cli

    def run(*argv):
        return CliRunner().invoke(cli, list(argv), prog_name="mc")

    result = run("config", "trust", "--help")
    assert result.exit_code == 0
    for name in ("add", "add-certificate", "list", "list-tokens", "remove", "revoke-token",
                 "show"):
        assert f"\n  {name} " in result.output
    result = run("config", "trust", "add")
    assert result.exit_code == 2 and "Missing the client's name" in result.output
    result = run("config", "trust", "add-certificate", "a", "b")
    assert result.exit_code == 2 and 'Expected a remote like "lab:"' in result.output
    result = run("config", "trust", "list", "-f", "xml")
    assert result.exit_code == 2

"""Untrusted network clients against the HTTPS API of a real machined on 127.0.0.1: request
lines crafted to slip past the allow-list (path tricks, methods, websocket upgrades), probes
for private images, old TLS versions, and certificates that merely resemble trusted ones."""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cli import tls
from cli.client import Client
from cli.errors import ApiError, CliError
from tests.conftest import built_image, is_root, spawn_daemon

pytestmark = [pytest.mark.daemon,
              pytest.mark.skipif(not is_root, reason="machined needs root")]


@pytest.fixture(scope="module")
def server():
    with spawn_daemon() as d:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            d.port = s.getsockname()[1]
        d.ok("config", "set", "core.https_address", f"127.0.0.1:{d.port}")
        d.url = f"https://127.0.0.1:{d.port}"
        d.pem = (d.root / "server.crt").read_text()
        d.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
             "--alias", "hh-private")
        d.private = json.loads(d.ok("image", "list", "--format", "json"))[0]["fingerprint"]
        yield d


def raw(server, request: str, *, version: ssl.TLSVersion | None = None) -> tuple[int, bytes]:
    """Send `request` (request line and headers) as is; (status, body)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock, \
            ctx.wrap_socket(sock) as conn:
        conn.sendall(f"{request}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("request_line", [
    "GET //1.0/instances HTTP/1.1",
    "GET /1.0/instances/ HTTP/1.1",
    "GET /1.0/images/../instances HTTP/1.1",
    "GET /1.0/images/%2e%2e/instances HTTP/1.1",
    "GET /1.0/images/x/../../instances HTTP/1.1",
    "GET /1.0%2finstances HTTP/1.1",
    "GET http://x/1.0/instances HTTP/1.1",
    "GET /1.0/operations HTTP/1.1",
    "GET /1.0/events HTTP/1.1",
    "GET /1.0/certificates HTTP/1.1",
    "GET /1.0/certificates/tokens HTTP/1.1",
    "HEAD /1.0/instances HTTP/1.1",
    "OPTIONS /1.0/instances HTTP/1.1",
    "GET /1.0/operations/x/websocket?secret=x HTTP/1.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13",
    "GET /1.0/instances/x/exec HTTP/1.1",
    "PATCH /1.0/images/aliases/hh-private HTTP/1.1",
    "DELETE /1.0/images/{private} HTTP/1.1",
])
def test_crafted_requests_never_pass_the_allow_list(server, request_line):
    status, body = raw(server, request_line.format(private=server.private))
    assert status == 403, body
    assert request_line.startswith("HEAD") or json.loads(body)["error"] == "not authorized"


@pytest.mark.parametrize("path", [
    "/1.0/images/{fp}", "/1.0/images/{fp}/export", "/1.0/images/{prefix}",
    "/1.0/images/{prefix}/export", "/1.0/images/aliases/{alias}",
])
def test_private_images_answer_exactly_like_missing_ones(server, path):
    """No oracle: the same status and words for a private image (by fingerprint, prefix or
    alias) as for one that does not exist; the listings show nothing."""
    private = dict(fp=server.private, prefix=server.private[:4], alias="hh-private")
    missing = dict(fp="f" * 64, prefix="ffff", alias="hh-missing")
    answers = []
    for names in (private, missing):
        status, body = raw(server, f"GET {path.format(**names)} HTTP/1.1")
        text = body.decode()
        for value in names.values():
            text = text.replace(value, "<name>")
        answers.append((status, text))
    assert answers[0] == answers[1] and answers[0][0] == 404, answers
    for listing in ("/1.0/images?recursion=1", "/1.0/images/aliases?recursion=1"):
        status, body = raw(server, f"GET {listing} HTTP/1.1")
        assert status == 200 and json.loads(body)["metadata"] == []


def test_tls_below_1_3_is_refused(server):
    with pytest.raises(ssl.SSLError):
        raw(server, "GET /1.0 HTTP/1.1", version=ssl.TLSVersion.TLSv1_2)
    assert raw(server, "GET /1.0 HTTP/1.1", version=ssl.TLSVersion.TLSv1_3)[0] == 200


def _cert(directory: Path, name: str, cn: str, *, ca: bool = False,
          issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path, Path]:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(signer_key, hashes.SHA384()))
    crt, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key, crt, keyfile


def _auth(server, crt: Path, key: Path, path: str = "/1.0") -> object:
    client = Client(url=server.url, ssl_context=tls.client_context(server.pem, (crt, key)))
    try:
        answer = client.get(path)
        return answer.get("auth") if isinstance(answer, dict) else "listed"
    except ApiError as e:
        return e.status
    except CliError:
        return "refused"
    finally:
        client.close()


def test_only_the_trusted_certificate_itself_is_trusted(server, tmp_path):
    """The trusted certificates are the server's verify store, so one that may sign (CA:TRUE)
    lets certificates it signed complete a handshake: they stay untrusted. A certificate
    with a trusted one's subject but another key trusts nothing and locks nobody out."""
    ca = _cert(tmp_path, "ca", "hh-ca", ca=True)
    victim = _cert(tmp_path, "victim", "hh-victim")
    server.ok("config", "trust", "add-certificate", os.fspath(ca[2]), "--name", "hh-ca")
    server.ok("config", "trust", "add-certificate", os.fspath(victim[2]), "--name", "hh-v")
    child = _cert(tmp_path, "child", "hh-victim", issuer=(ca[0], ca[1]))
    assert _auth(server, child[2], child[3]) == "untrusted"
    assert _auth(server, child[2], child[3], "/1.0/instances") == 403
    of_victim = _cert(tmp_path, "of-victim", "hh-other", issuer=(victim[0], victim[1]))
    assert _auth(server, of_victim[2], of_victim[3]) == "refused"  # CA:FALSE signs nothing
    mimic = _cert(tmp_path, "mimic", "hh-victim")
    assert _auth(server, mimic[2], mimic[3]) == "refused"
    server.ok("config", "trust", "add-certificate", os.fspath(mimic[2]), "--name", "hh-m")
    assert _auth(server, victim[2], victim[3], "/1.0/instances") == "listed"
    assert _auth(server, mimic[2], mimic[3], "/1.0/instances") == "listed"

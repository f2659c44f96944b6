"""Certificates for the HTTPS API (cryptography): the daemon's self-signed server certificate
and the parsing/fingerprinting of client certificates.

As LXD: an EC P-384 key, a self-signed certificate valid 10 years, identified by the sha256 of
its DER bytes (the "fingerprint" users compare and clients pin).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from machined.errors import BadRequest

VALID_DAYS = 3650
PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
ACCEPTS = "a PEM certificate, or the base64 of its DER bytes"


def parse_certificate(data: str | bytes, what: str = "certificate") -> x509.Certificate:
    """One X.509 certificate from PEM text, base64 DER (LXD's API form) or raw DER bytes;
    anything else is a BadRequest that names `what` and says what is accepted."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    text = raw.decode("ascii", errors="replace")
    if PEM_BEGIN in text:
        count = text.count(PEM_BEGIN)
        if count != 1:
            raise BadRequest(f"The {what} holds {count} certificates; give exactly one (the "
                             "client's own, not a chain)")
        try:
            return x509.load_pem_x509_certificate(raw)
        except ValueError as e:
            raise BadRequest(f"The {what} is not a valid PEM certificate: {e}") from None
    der = raw
    stripped = b"".join(raw.split())
    if stripped and not stripped.startswith(b"\x30"):  # DER starts with a SEQUENCE tag
        try:
            der = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"The {what} is neither PEM nor base64: expected {ACCEPTS}") \
                from None
    if not der:
        raise BadRequest(f"The {what} is empty: expected {ACCEPTS}")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise BadRequest(f"The {what} is not a valid X.509 certificate ({e}): expected "
                         f"{ACCEPTS}") from None


def der_bytes(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem_text(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint(data: str | bytes | x509.Certificate) -> str:
    """sha256 (hex) of the DER encoding, from a certificate object, PEM or DER."""
    cert = data if isinstance(data, x509.Certificate) else parse_certificate(data)
    return hashlib.sha256(der_bytes(cert)).hexdigest()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def check_client_certificate(cert: x509.Certificate, now: datetime.datetime) -> None:
    """Refuse what could never complete a TLS handshake as a client: OpenSSL checks the
    validity dates and, when the certificate names its purposes, requires clientAuth."""
    if cert.not_valid_after_utc <= now:
        raise BadRequest(f"The certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise BadRequest("The certificate is not valid before "
                         f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z")
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise BadRequest("The certificate's extended key usage does not include TLS client "
                         "authentication (clientAuth), so it cannot be used to log in")


def generate(common_name: str, *, hosts: list[str], client: bool,
             days: int = VALID_DAYS) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): self-signed, EC P-384. `hosts` (IPs or DNS names)
    become subjectAltNames."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "machined"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    purpose = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False))
    sans = _alt_names(hosts)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA384())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(h for h in hosts if h):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def server_hosts(listen_host: str = "") -> list[str]:
    """subjectAltNames of the server certificate: the host name, loopback, and the listen
    host when it names one address. Clients pin the exact certificate, so these only help
    tools that check host names."""
    hosts = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    if listen_host and listen_host not in ("0.0.0.0", "::"):
        hosts.append(listen_host)
    return hosts


def ensure_server_certificate(crt: Path, key: Path, listen_host: str = "") -> None:
    """Create the daemon's key pair unless both files exist. The key is written first, 0600,
    each file through a temporary file renamed into place: a crash leaves either the old pair
    or a lone key (which is replaced), never a certificate without its key."""
    if crt.exists() and key.exists():
        return
    cert_pem, key_pem = generate(f"root@{socket.gethostname()}",
                                 hosts=server_hosts(listen_host), client=False)
    write_atomically(key, key_pem, 0o600)
    write_atomically(crt, cert_pem, 0o644)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Create a sibling temporary file with `mode` from the start (a private key is never
    readable by others, not even for an instant), fsync it, rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""TLS for https remotes: mc's client certificate, server certificates (fetched, pinned) and
the contexts and connections cli/client.py uses. Imported only for https (ssl costs start-up
time that `mc exec` on the unix socket must not pay).

- Client certificate: `$MC_CONF/client.crt` + `client.key` (EC P-384, clientAuth, 10 years),
  made on first need, the key 0600. The server identifies us by its sha256.
- Server certificates: a remote's certificate pinned at `mc remote add` (after the user
  accepted its fingerprint, or because the join token named it) is trusted exactly, without a
  host name check, as lxc does; other https servers are checked against the system CA store
  (SSL_CERT_FILE is honoured) with host name checking.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cli.errors import CliError

CLIENT_CERT, CLIENT_KEY = "client.crt", "client.key"
CONNECT_TIMEOUT = 30.0


# -- certificates ------------------------------------------------------------------------
def fingerprint(cert: str | bytes) -> str:
    """sha256 (hex) of a certificate's DER bytes, given PEM text or DER bytes."""
    if isinstance(cert, str) or cert.lstrip().startswith(b"-----BEGIN"):
        text = cert if isinstance(cert, str) else cert.decode("ascii", errors="replace")
        try:
            der = ssl.PEM_cert_to_DER_cert(text.strip())
        except ValueError:
            raise CliError("Not a PEM certificate (expected -----BEGIN CERTIFICATE-----)") \
                from None
    else:
        der = cert
    return hashlib.sha256(der).hexdigest()


def client_cert_paths(directory: Path | str | None = None) -> tuple[Path, Path]:
    """(certificate, key) of this client, made now if missing."""
    from cli.confdir import conf_dir

    base = Path(directory) if directory is not None else Path(conf_dir())
    crt, key = base / CLIENT_CERT, base / CLIENT_KEY
    if not (crt.exists() and key.exists()):
        _make_client_certificate(crt, key)
    return crt, key


def _make_client_certificate(crt: Path, key: Path) -> None:
    import datetime
    import getpass

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    private = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mc"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{getpass.getuser()}@{socket.gethostname()}"),
    ])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(private, hashes.SHA384()))
    _write(key, private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), 0o600)
    _write(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Temporary file created with its final mode, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def split_url(url: str) -> tuple[str, int]:
    """(host, port) of an https:// URL (default port 8443, as machined remotes)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise CliError(f'Invalid URL "{url}": bad port') from None
    if parts.scheme != "https" or not parts.hostname:
        raise CliError(f'Invalid URL "{url}": expected https://host[:port]')
    return parts.hostname, port or 8443


def fetch_server_certificate(url: str, timeout: float = CONNECT_TIMEOUT) -> str:
    """The certificate the server at `url` presents (PEM), not verified: for the user (or a
    join token's fingerprint) to judge before it is pinned."""
    host, port = split_url(url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = _tcp_connect(url, host, port, timeout)
    try:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as e:
        raise CliError(f"TLS handshake with {url} failed: {e.reason or e}") from None
    except OSError as e:
        raise CliError(f"Cannot reach {url}: {e.strerror or e}") from None
    if not der:
        raise CliError(f"{url} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)


# -- contexts and connections ------------------------------------------------------------
class RemoteContext(ssl.SSLContext):
    """A client context that remembers what client_context put in it."""

    pinned = ""  # fingerprint of the one server certificate trusted, "" = system CA store
    client_cert = False  # whether our certificate is presented


class _PinnedSocket(ssl.SSLSocket):
    """Every connection of a pinned context (connect() below, but also urllib's in
    cli/streams.py) must end its handshake with exactly the pinned certificate: with it as
    the only anchor, OpenSSL alone would accept any certificate it signed, for any host."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        pinned = getattr(self.context, "pinned", "")
        got = fingerprint(self.getpeercert(binary_form=True) or b"")
        if pinned and got != pinned:
            error = ssl.SSLCertVerificationError(
                f"certificate {got[:12]}... is not the pinned {pinned[:12]}...")
            error.verify_message = f"fingerprint {got[:12]}... is not the pinned one"
            raise error


def client_context(server_pem: str | None = None,
                   client_cert: tuple[Path, Path] | None = None) -> RemoteContext:
    """The context for an https remote: exactly `server_pem` (pinned, no host name check)
    when given, else the system CA store with host name checking; `client_cert` (crt, key)
    is presented when given."""
    ctx = RemoteContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, host name check
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if server_pem:
        ctx.check_hostname = False
        # The pinned certificate is the only anchor; PARTIAL_CHAIN lets a self-signed leaf be
        # one, and connect() compares the fingerprint (a pinned CA must not admit others).
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        try:
            ctx.load_verify_locations(cadata=server_pem)
        except (ssl.SSLError, ValueError):
            raise CliError("The pinned server certificate is not a valid PEM certificate") \
                from None
        ctx.pinned = fingerprint(server_pem)
        ctx.sslsocket_class = _PinnedSocket
    else:
        ctx.load_default_certs()  # the system store; honours SSL_CERT_FILE / SSL_CERT_DIR
    if client_cert is not None:
        try:
            ctx.load_cert_chain(os.fspath(client_cert[0]), os.fspath(client_cert[1]))
        except (OSError, ssl.SSLError) as e:
            raise CliError(f"Cannot load the client certificate {client_cert[0]}: "
                           f"{getattr(e, 'strerror', None) or e}") from None
        ctx.client_cert = True
    return ctx


def connect(url: str, ctx: ssl.SSLContext | None, timeout: float = CONNECT_TIMEOUT
            ) -> ssl.SSLSocket:
    """A TLS connection to an https remote, verified as `ctx` says, or a CliError that says
    what went wrong and how to fix it."""
    host, port = split_url(url)
    ctx = ctx or client_context()
    sock = _tcp_connect(url, host, port, timeout)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as e:
        sock.close()
        raise _verify_error(url, ctx, e) from None
    except ssl.SSLError as e:
        sock.close()
        raise CliError(f"TLS handshake with {url} failed: {e.reason or e}") from None
    except OSError as e:
        sock.close()
        raise CliError(f"Cannot reach {url}: {e.strerror or e}") from None
    pinned = getattr(ctx, "pinned", "")
    if pinned:
        got = fingerprint(tls.getpeercert(binary_form=True) or b"")
        if got != pinned:
            tls.close()
            raise _pin_mismatch(url, pinned, got)
    tls.settimeout(None)  # operations (exec, waits) may take as long as they take
    return tls


def _tcp_connect(url: str, host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise CliError(f"Cannot connect to {url}: connection refused (nothing listens there; "
                       "on a machined server, core.https_address sets the address)") from None
    except socket.gaierror as e:
        raise CliError(f"Cannot connect to {url}: unknown host ({e.strerror})") from None
    except TimeoutError:
        raise CliError(f"Cannot connect to {url}: timed out after {timeout:g} s") from None
    except OSError as e:
        raise CliError(f"Cannot connect to {url}: {e.strerror or e}") from None


def _verify_error(url: str, ctx: ssl.SSLContext, e: ssl.SSLCertVerificationError) -> CliError:
    pinned = getattr(ctx, "pinned", "")
    if pinned:
        return CliError(f"The certificate of {url} is not the one pinned for it "
                        f"({pinned[:12]}...; {e.verify_message}): the server's certificate "
                        "changed or this is another server; if the change is expected, "
                        "remove the remote and add it again")
    return CliError(f"The certificate of {url} is not trusted by the system CA store "
                    f"({e.verify_message}); for a self-signed machined server, check its "
                    "fingerprint and pin it: mc remote add <name> "
                    f"{url} --accept-certificate")


def _pin_mismatch(url: str, pinned: str, got: str) -> CliError:
    return CliError(f"The certificate of {url} (fingerprint {got[:12]}...) is not the one "
                    f"pinned for it ({pinned[:12]}...): the server's certificate changed or "
                    "this is another server; if the change is expected, remove the remote "
                    "and add it again")


def untrusted_client_error(url: str) -> CliError:
    """What a server's refusal of our certificate looks like from here: TLS 1.3 finishes the
    client's side of the handshake before the server checks the client certificate, and the
    server then drops the connection before answering."""
    return CliError(f"{url} closed the connection after the TLS handshake: this client's "
                    "certificate is not trusted by it. Ask for a trust token (mc config trust "
                    "add on the server) and add the remote again with it, or have the "
                    "server's administrator run mc config trust add-certificate")

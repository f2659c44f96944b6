"""A static file server on 127.0.0.1 (http or https) for tests: the stand-in for public image
servers (there is no internet here). Serves a directory; can be told to fail requests."""

from __future__ import annotations

import datetime
import functools
import http.server
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Behaviour:
    """Knobs a test flips while the server runs."""
    requests: list[str] = field(default_factory=list)
    # path -> callable(body bytes) -> bytes: corrupt or truncate what is sent
    mangle: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    # paths whose connection is cut after this many bytes
    cut_after: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)


class _Handler(http.server.SimpleHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        self.behaviour.requests.append(path)
        if path in self.behaviour.status:
            self.send_error(self.behaviour.status[path])
            return
        if path in self.behaviour.mangle or path in self.behaviour.cut_after:
            local = Path(self.translate_path(path))
            if not local.is_file():
                self.send_error(404)
                return
            data = local.read_bytes()
            length = len(data)
            if path in self.behaviour.mangle:
                data = self.behaviour.mangle[path](data)
                length = len(data)
            if path in self.behaviour.cut_after:
                data = data[: self.behaviour.cut_after[path]]
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


def listen(handler: object, tls: tuple[Path, Path] | None = None,
           port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A threading HTTP server on 127.0.0.1 (https with tls=(cert, key)) and its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)  # type: ignore[arg-type]
    httpd.daemon_threads = True
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    return httpd, f"{scheme}://127.0.0.1:{httpd.server_address[1]}"


class StreamServer:
    """`with StreamServer(root) as s: s.url` -> http://127.0.0.1:<port>. With tls=(cert, key)
    paths it serves https."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        self.behaviour = Behaviour()
        handler = type("Handler", (_Handler,), {"behaviour": self.behaviour})
        self.httpd, self.url = listen(functools.partial(handler, directory=str(root)), tls)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StreamServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_certificate(directory: Path, name: str = "server", *,
                     ca: tuple[object, object] | None = None) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (self-signed, or signed by `ca` = (ca_cert, ca_key))."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"machined-test-{name}")])
    issuer_cert, issuer_key = ca if ca is not None else (None, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)  # type: ignore[attr-defined]
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.SubjectAlternativeName(
                   [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost")]), critical=False))
    cert = builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    crt_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return crt_path, key_path


def make_ca(directory: Path) -> tuple[Path, object, object]:
    """A test CA: (pem path, cert, key), for SSL_CERT_FILE in place of the system store."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "machined-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key

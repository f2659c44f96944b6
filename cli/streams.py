"""Browsing a simplestreams image server from mc (`mc image list images:`, `image info`):
fetch `streams/v1/index.json` and the products files, parse them with the daemon's pure
module (machined.images.simplestreams), and present images in the API's JSON shape so the
image commands render them like local ones. Downloads are the daemon's job, never mc's."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from cli.errors import CliError

if TYPE_CHECKING:
    from cli.remotes import ClientConfig, Remote
    from machined.images.simplestreams import Catalog, StreamImage

INDEX = "streams/v1/index.json"
MAX_DOCUMENT = 256 << 20  # a products file of a big server is tens of MB; refuse absurd ones
TIMEOUT = 30


def host_arch() -> str:
    """Kernel-style architecture of this machine (what the daemon runs containers as)."""
    return os.uname().machine


class CertificateError(CliError):
    """The server's TLS certificate did not verify (the caller may offer to pin it)."""


def fetch_json(remote: Remote, path: str, ctx: Any, *, what: str) -> Any:
    """GET <remote>/<path> as JSON; any failure is one sentence naming the remote."""
    import urllib.error
    import urllib.request

    url = f"{remote.addr}/{path}"
    request = urllib.request.Request(url, headers={"User-Agent": "mc"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT,
                                    context=ctx if url.startswith("https:") else None) as resp:
            body = resp.read(MAX_DOCUMENT + 1)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise CliError(f'The remote "{remote.name}" is not a simplestreams server: '
                           f"{url} was not found (HTTP 404)") from None
        raise CliError(f'The remote "{remote.name}" answered {url} with HTTP {e.code}') \
            from None
    except (urllib.error.URLError, OSError) as e:
        import ssl

        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        error = CertificateError if isinstance(reason, ssl.SSLCertVerificationError) \
            else CliError
        raise error(f'Could not reach the remote "{remote.name}" ({url}): '
                       f"{describe(reason)}") from None
    if len(body) > MAX_DOCUMENT:
        raise CliError(f"{url}: the {what} is larger than {MAX_DOCUMENT >> 20} MiB")
    try:
        return json.loads(body)
    except ValueError:
        raise CliError(f'The remote "{remote.name}" is not a simplestreams server: {url} is '
                       f"not JSON") from None


def describe(reason: Any) -> str:
    """A connection failure as a sentence; certificate failures say what to do."""
    import ssl

    if isinstance(reason, ssl.SSLCertVerificationError):
        return (f"the server's certificate is not trusted ({reason.verify_message}); "
                "pin it with `mc remote add ... --accept-certificate`, or re-add the remote "
                "if its certificate changed")
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def check_index(remote: Remote, ctx: Any) -> list[str]:
    """The products paths of the remote's index; a clear error when it has none."""
    from machined.images.simplestreams import StreamError, index_paths

    index = fetch_json(remote, INDEX, ctx, what="index")
    try:
        return index_paths(index)
    except StreamError as e:
        raise CliError(f'The remote "{remote.name}" is not a simplestreams server: {e}') \
            from None


def catalog(conf: ClientConfig, remote: Remote) -> Catalog:
    """Every image the remote serves, with LXD's alias table for this host."""
    from cli.remotes import ssl_context
    from machined.images.simplestreams import Catalog, StreamError, parse_products

    ctx = ssl_context(conf, remote) if remote.scheme == "https" else None
    images: list[StreamImage] = []
    for path in check_index(remote, ctx):
        doc = fetch_json(remote, path, ctx, what="products file")
        try:
            images += parse_products(doc)
        except StreamError as e:
            raise CliError(f'The remote "{remote.name}" sent a malformed {path}: {e}') \
                from None
    return Catalog(images, host_arch())


def resolve(cat: Catalog, remote: Remote, name: str) -> StreamImage:
    from machined.images.simplestreams import NoSuchImage

    try:
        return cat.resolve(name)
    except NoSuchImage as e:
        raise CliError(f'{e} (remote "{remote.name}")') from None


def image_json(image: StreamImage) -> dict[str, Any]:
    """A stream image in the shape of GET /1.0/images/<fp> (as lxc shows remote images)."""
    epoch = "1970-01-01T00:00:00Z"
    return {
        "fingerprint": image.fingerprint,
        "filename": image.files[0].path.rsplit("/", 1)[-1] if image.files else "",
        "size": image.size,
        "architecture": image.architecture,
        "type": image.type,
        "public": True,
        "auto_update": False,
        "cached": False,
        "properties": dict(image.properties),
        "aliases": [{"name": a, "description": ""} for a in image.aliases],
        "created_at": image.created_at or epoch,
        # lxc shows the creation date as a remote image's upload date
        "uploaded_at": image.created_at or epoch,
        "last_used_at": epoch,
        "expires_at": image.expires_at or epoch,
    }

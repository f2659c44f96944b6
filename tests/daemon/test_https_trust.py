"""The HTTPS API and TLS client-certificate trust against a real machined listening on
127.0.0.1: untrusted callers see only public images, tokens admit one client once, removal
revokes at once, core.https_address rebinds live, and the client says clearly what is wrong."""

from __future__ import annotations

import datetime
import json
import os
import socket

import pytest

from cli import tls, trust_join
from cli.client import Client
from cli.errors import ApiError, CliError
from machined.trust import certs
from tests.conftest import built_image, is_root, spawn_daemon
from tests.daemon.test_api import tiny_image
from tests.streamserver import make_certificate

pytestmark = [pytest.mark.daemon,
              pytest.mark.skipif(not is_root, reason="machined needs root")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    clock = tmp_path_factory.mktemp("tr-clock") / "now"
    clock.write_text("")  # empty: the real clock
    with spawn_daemon(env={"MACHINED_TEST_CLOCK": os.fspath(clock)}) as d:
        d.clock = clock
        d.port = free_port()
        d.ok("config", "set", "core.https_address", f"127.0.0.1:{d.port}")
        d.url = f"https://127.0.0.1:{d.port}"
        d.pem = (d.root / "server.crt").read_text()
        yield d


@pytest.fixture
def anon(server):
    """An untrusted client: the server's certificate pinned, no client certificate."""
    client = Client(url=server.url, ssl_context=tls.client_context(server.pem))
    yield client
    client.close()


@pytest.fixture(scope="module")
def local(server):
    """The unix socket: always trusted."""
    client = Client(os.fspath(server.socket))
    yield client
    client.close()


def _token(server, name: str) -> str:
    out = server.ok("config", "trust", "add", name).splitlines()
    assert out[0] == f"Client {name} certificate add token:"
    return out[1]


def _joined(server, tmp_path, name: str) -> tuple[Client, str]:
    """A client that joined with a fresh token: (its client, its certificate fingerprint)."""
    crt, key = tls.client_cert_paths(tmp_path / name)
    token = _token(server, name)
    url, pem = trust_join.find_server(trust_join.parse_token(token))
    info = trust_join.join(url, token, pem, crt, key)
    assert info["auth"] == "trusted"
    client = Client(url=url, ssl_context=tls.client_context(pem, (crt, key)))
    return client, tls.fingerprint(crt.read_text())


def _status(call) -> int:
    with pytest.raises(ApiError) as err:
        call()
    return err.value.status


def test_the_daemon_presents_its_own_lxd_style_certificate(server, local):
    assert tls.fingerprint(tls.fetch_server_certificate(server.url)) == tls.fingerprint(
        server.pem)
    assert (os.stat(server.root / "server.key").st_mode & 0o777) == 0o600
    env = local.get("/1.0")["environment"]
    assert env["certificate_fingerprint"] == tls.fingerprint(server.pem)
    assert env["addresses"] == [f"127.0.0.1:{server.port}"]


def test_untrusted_server_info_is_reduced(server, local, anon):
    info = anon.get("/1.0")
    assert info["auth"] == "untrusted" and info["api_version"] == "1.0"
    assert info["config"] == {} and info["environment"] == {}
    assert local.get("/1.0")["auth"] == "trusted"


@pytest.mark.parametrize("method,path", [
    ("POST", "/1.0/instances"), ("GET", "/1.0/instances"), ("PUT", "/1.0"),
    ("GET", "/1.0/certificates"), ("GET", "/1.0/operations"), ("GET", "/1.0/no-such-thing"),
    ("DELETE", "/1.0/images/aliases/x"), ("POST", "/1.0/certificates"),
])
def test_untrusted_callers_are_refused(anon, method, path):
    body = {"name": "tr-x", "source": {"type": "none"}} if method != "GET" else None
    with pytest.raises(ApiError) as err:
        anon.call(method, path, body)
    assert err.value.status == 403 and err.value.message == "not authorized"


def test_untrusted_bodies_are_capped(anon):
    with pytest.raises(ApiError) as err:
        anon.post("/1.0/certificates", {"trust_token": "x", "certificate": "A" * 100_000})
    assert err.value.status == 400 and "too large" in err.value.message


def test_only_public_images_reach_untrusted_callers(server, local, anon, tmp_path):
    server.ok("image", "import", *map(os.fspath, built_image("busybox", "unified")),
              "--public", "--alias", "tr-public")
    private = tiny_image(tmp_path, "tr-private.tar.gz")
    server.ok("image", "import", os.fspath(private), "--alias", "tr-private")
    public_fp = local.get("/1.0/images/aliases/tr-public")["target"]
    private_fp = local.get("/1.0/images/aliases/tr-private")["target"]
    listed = {i["fingerprint"] for i in anon.get("/1.0/images?recursion=1")}
    assert public_fp in listed and private_fp not in listed
    assert anon.get(f"/1.0/images/{public_fp}")["public"] is True
    assert _status(lambda: anon.get(f"/1.0/images/{private_fp}")) == 404
    assert _status(lambda: anon.get(f"/1.0/images/{private_fp}/export")) == 404
    assert anon.raw("GET", f"/1.0/images/{public_fp}/export").status == 200
    assert _status(lambda: anon.get("/1.0/images/aliases/tr-private")) == 404
    assert anon.get("/1.0/images/aliases/tr-public")["target"] == public_fp


def test_a_token_lets_one_client_join_once(server, local, anon, tmp_path):
    token = _token(server, "tr-laptop")
    tok = trust_join.parse_token(token)
    assert tok.client_name == "tr-laptop" and tok.fingerprint == tls.fingerprint(server.pem)
    assert tok.addresses == [f"127.0.0.1:{server.port}"]
    expires = datetime.datetime.fromisoformat(tok.expires_at.replace("Z", "+00:00"))
    left = expires - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=23) < left <= datetime.timedelta(days=1)
    assert "tr-laptop" in server.ok("config", "trust", "list-tokens")

    url, pem = trust_join.find_server(tok)
    assert (url, pem) == (server.url, server.pem)
    crt, key = tls.client_cert_paths(tmp_path / "laptop")
    trust_join.join(url, token, pem, crt, key)
    client = Client(url=url, ssl_context=tls.client_context(pem, (crt, key)))
    assert client.get("/1.0")["auth"] == "trusted"
    assert isinstance(client.get("/1.0/instances"), list)
    client.close()
    fp = tls.fingerprint(crt.read_text())
    listed = json.loads(server.ok("config", "trust", "list", "--format", "json"))
    assert {(c["name"], c["fingerprint"]) for c in listed} >= {("tr-laptop", fp)}
    table = server.ok("config", "trust", "list")
    assert "tr-laptop" in table and fp[:12] in table
    assert "name: tr-laptop" in server.ok("config", "trust", "show", fp[:16])
    assert "tr-laptop" not in server.ok("config", "trust", "list-tokens")

    # the same token again, for another certificate: refused, nothing added
    other_crt, other_key = tls.client_cert_paths(tmp_path / "thief")
    with pytest.raises(CliError, match="refused the trust token: The trust token is not "
                                       r"valid \(unknown or already used\)"):
        trust_join.join(url, token, pem, other_crt, other_key)
    assert tls.fingerprint(other_crt.read_text()) not in {
        c["fingerprint"] for c in local.get("/1.0/certificates?recursion=1")}
    # a wrong secret in a well-formed request
    with pytest.raises(ApiError) as err:
        anon.post("/1.0/certificates", {"trust_token": "0" * 64,
                                        "certificate": other_crt.read_text()})
    assert err.value.status == 403


def test_an_expired_token_is_refused(server, local, tmp_path):
    server.ok("config", "set", "core.remote_token_expiry", "15M")
    try:
        token = _token(server, "tr-late")
        tok = trust_join.parse_token(token)
        expires = datetime.datetime.fromisoformat(tok.expires_at.replace("Z", "+00:00"))
        left = expires - datetime.datetime.now(datetime.UTC)
        assert datetime.timedelta(minutes=14) < left <= datetime.timedelta(minutes=15)
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=16)
        server.clock.write_text(later.isoformat())
        crt, key = tls.client_cert_paths(tmp_path / "late")
        with pytest.raises(CliError, match="The trust token expired"):
            trust_join.join(server.url, token, server.pem, crt, key)
    finally:
        server.clock.write_text("")
        server.ok("config", "unset", "core.remote_token_expiry")
    assert tls.fingerprint(crt.read_text()) not in {
        c["fingerprint"] for c in local.get("/1.0/certificates?recursion=1")}


def test_removing_a_certificate_revokes_it_at_once(server, tmp_path):
    client, fp = _joined(server, tmp_path, "tr-revoked")
    assert isinstance(client.get("/1.0/instances"), list)  # connection kept alive
    server.ok("config", "trust", "remove", fp[:12])
    # the open connection: the next request is untrusted
    assert _status(lambda: client.get("/1.0/instances")) == 403
    assert client.get("/1.0")["auth"] == "untrusted"
    client.close()
    # a new connection: the server refuses the handshake, and the client says why
    with pytest.raises(CliError, match="this client's certificate is not trusted by it"):
        client.get("/1.0")
    assert server.mc("config", "trust", "remove", fp[:12]).code == 1


def test_an_unknown_client_certificate_gets_a_clear_error(server, tmp_path):
    crt, key = tls.client_cert_paths(tmp_path / "stranger")
    client = Client(url=server.url, ssl_context=tls.client_context(server.pem, (crt, key)))
    with pytest.raises(CliError) as err:
        client.get("/1.0/images")
    assert err.value.message.startswith(f"{server.url} closed the connection after the TLS "
                                        "handshake: this client's certificate is not trusted")


def test_add_certificate_trusts_a_pem_file(server, tmp_path):
    crt, key = tls.client_cert_paths(tmp_path / "ops")
    server.ok("config", "trust", "add-certificate", os.fspath(crt), "--name", "tr-ops")
    client = Client(url=server.url, ssl_context=tls.client_context(server.pem, (crt, key)))
    assert client.get("/1.0")["auth"] == "trusted"
    again = server.mc("config", "trust", "add-certificate", os.fspath(crt))
    assert again.code == 1 and "already trusted" in again.err
    # a certificate for servers only could never log in: refused up front
    server_only = tmp_path / "server-only.crt"
    server_only.write_bytes(certs.generate("srv", hosts=[], client=False)[0])
    res = server.mc("config", "trust", "add-certificate", os.fspath(server_only))
    assert res.code == 1 and "(clientAuth)" in res.err
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate\n")
    res = server.mc("config", "trust", "add-certificate", os.fspath(bad))
    assert res.code == 1 and "neither PEM nor base64" in res.err
    server.ok("config", "trust", "remove", tls.fingerprint(crt.read_text()))
    client.close()


def test_a_wrong_pin_or_an_unknown_ca_is_refused_by_the_client(server, tmp_path):
    other, _ = make_certificate(tmp_path, "impostor")
    pinned_wrong = Client(url=server.url, ssl_context=tls.client_context(other.read_text()))
    with pytest.raises(CliError, match=f"The certificate of {server.url} is not the one "
                                       "pinned for it"):
        pinned_wrong.get("/1.0")
    system = Client(url=server.url, ssl_context=tls.client_context())
    with pytest.raises(CliError, match="not trusted by the system CA store .*"
                                       "--accept-certificate"):
        system.get("/1.0")


def test_tokens_need_a_listener_and_a_name(server):
    res = server.mc("config", "trust", "add")
    assert res.code == 2 and "Missing the client's name" in res.err


def test_https_address_rebinds_live(server, anon, tmp_path):
    assert anon.get("/1.0")["auth"] == "untrusted"  # a kept-alive connection on the old port
    new_port = free_port()
    new_url = f"https://127.0.0.1:{new_port}"
    try:
        server.ok("config", "set", "core.https_address", f"127.0.0.1:{new_port}")
        moved = Client(url=new_url, ssl_context=tls.client_context(server.pem))
        assert moved.get("/1.0")["auth"] == "untrusted"
        moved.close()
        with pytest.raises(CliError, match="connection refused"):
            Client(url=server.url, ssl_context=tls.client_context(server.pem)).get("/1.0")
        with pytest.raises(CliError):  # the old connection was closed too
            anon.get("/1.0")
        token = trust_join.parse_token(_token(server, "tr-moved"))
        assert token.addresses == [f"127.0.0.1:{new_port}"]
        server.ok("config", "trust", "revoke-token", "tr-moved")

        server.ok("config", "unset", "core.https_address")
        with pytest.raises(CliError, match="connection refused"):
            Client(url=new_url, ssl_context=tls.client_context(server.pem)).get("/1.0")
        res = server.mc("config", "trust", "add", "tr-nowhere")
        assert res.code == 1 and "isn't listening on the network" in res.err

        # a port already taken: the error says so, the previous listener stays
        server.ok("config", "set", "core.https_address", f"127.0.0.1:{new_port}")
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            res = server.mc("config", "set", "core.https_address", f"127.0.0.1:{taken}")
            assert res.code == 1
            assert f"Cannot listen on 127.0.0.1:{taken}" in res.err
            assert f"the API still listens on 127.0.0.1:{new_port}" in res.err
        again = Client(url=new_url, ssl_context=tls.client_context(server.pem))
        assert again.get("/1.0")["auth"] == "untrusted"
        again.close()
    finally:
        server.ok("config", "set", "core.https_address", f"127.0.0.1:{server.port}")


def test_a_restarted_daemon_listens_and_trusts_again(tmp_path):
    with spawn_daemon() as d:
        port = free_port()
        d.ok("config", "set", "core.https_address", f"127.0.0.1:{port}")
        url = f"https://127.0.0.1:{port}"
        crt, key = tls.client_cert_paths(tmp_path / "kept")
        d.ok("config", "trust", "add-certificate", os.fspath(crt), "--name", "tr-kept")
        pem = (d.root / "server.crt").read_text()
        d.kill()
        d.start()
        assert (d.root / "server.crt").read_text() == pem  # same identity
        client = Client(url=url, ssl_context=tls.client_context(pem, (crt, key)))
        assert client.get("/1.0")["auth"] == "trusted"
        client.close()


def test_mc_joins_with_a_token_and_manages_trust_over_https(server):
    """The user's flow: `mc remote add <name> <token>`, then `mc config trust ... <remote>:`
    over HTTPS; removing our own certificate locks us out with a clear error."""
    token = _token(server, "tr-self")
    server.ok("remote", "add", "tr-self", token)
    try:
        listed = json.loads(server.ok("config", "trust", "list", "tr-self:", "-f", "json"))
        mine = [c for c in listed if c["name"] == "tr-self"]
        assert len(mine) == 1
        fp = mine[0]["fingerprint"]
        shown = server.ok("config", "trust", "show", f"tr-self:{fp[:10]}")
        assert f"fingerprint: {fp}" in shown and "certificate: |\n  -----BEGIN" in shown
        out = server.ok("config", "trust", "add", "tr-self:tr-other")
        assert out.startswith("Client tr-other certificate add token:\n")
        assert "tr-other" in server.ok("config", "trust", "list-tokens", "tr-self:")
        server.ok("config", "trust", "revoke-token", "tr-self:tr-other")
        assert "tr-other" not in server.ok("config", "trust", "list-tokens")
        res = server.mc("config", "trust", "revoke-token", "tr-other")
        assert res.code == 1 and "No pending trust token for 'tr-other'" in res.err
        server.ok("config", "trust", "remove", f"tr-self:{fp[:12]}")
        res = server.mc("config", "trust", "list", "tr-self:")
        assert res.code == 1
        assert "this client's certificate is not trusted by it" in res.err
    finally:
        server.mc("remote", "remove", "tr-self")

"""wss:// on the real server: TLS in the worker, mixed ws/wss addresses, bad input on TLS ports.

Certificates come from `make certs` (a development CA and a localhost certificate) made
into a temporary folder, so the test uses the same recipe users do.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, free_port, run_cli
from lapps.client import connect
from wsclient import RawClient

HANDSHAKE_TIMEOUT = 2   # the fixture's [limits] handshake_timeout


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    subprocess.run(["make", "-s", "certs", f"CERTS={folder}"], cwd=REPO, check=True,
                   capture_output=True)
    return folder


@pytest.fixture(scope="module")
def client_ctx(certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.crt"))


@pytest.fixture(scope="module")
def server(lapps_server_module, certs):
    plain = free_port()
    srv = lapps_server_module(
        {"echo": {}, "echo_lapps": {"protocol": "lapps", "preload": ["time", "murmur"]}},
        settings={"server": {"tls": {"enabled": True, "cert": str(certs / "localhost.crt"),
                                     "key": str(certs / "localhost.key")},
                             "endpoints": [{"port": plain, "ip": "127.0.0.1"}]}},
        workers=2, wait=False)
    srv.plain_port = plain
    srv.wait_log("serving", count=2)
    return srv


def test_wss_echo_of_text_and_large_binary(server, client_ctx):
    with connect(f"wss://localhost:{server.port}/echo", ssl_context=client_ctx) as c:
        c.send_text("over TLS")
        assert c.recv(timeout=5) == (1, b"over TLS")
        big = bytes(range(256)) * 1024
        c.send_binary(big)
        assert c.recv(timeout=5) == (2, big)
        assert c.close() == (1000, "")


def test_lapps_protocol_over_wss(server, client_ctx):
    with connect(f"wss://localhost:{server.port}/echo_lapps", ssl_context=client_ctx) as c:
        key = c.request("login", ["u", "p"])[0]
        assert c.request("echo", [key, "x", 1]) == ["x", 1]


def test_plain_ws_endpoint_beside_the_tls_port(server):
    with connect(f"ws://127.0.0.1:{server.plain_port}/echo") as c:
        c.send_text("plain")
        assert c.recv(timeout=5) == (1, b"plain")


@pytest.mark.parametrize("garbage", [
    b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n",
    b"\x16\x03\x01\x00\x05hello-not-a-client-hello",
    bytes(range(256)),
])
def test_plain_http_or_garbage_on_the_tls_port_is_dropped_without_harm(server, client_ctx, garbage):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(garbage)
        try:
            assert s.recv(4096) is not None   # an alert or EOF: either way, nothing served
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass   # a reset is a drop too
    with connect(f"wss://localhost:{server.port}/echo", ssl_context=client_ctx) as c:
        c.send_text("still serving")
        assert c.recv(timeout=5) == (1, b"still serving")


def test_stalled_tls_handshake_is_cut_at_handshake_timeout(server):
    with RawClient.open(server.port) as c:
        c.send_raw(b"\x16\x03\x01")   # the start of a ClientHello, then nothing
        c.expect_tcp_close(timeout=HANDSHAKE_TIMEOUT + 3)


def test_min_version_13_refuses_a_tls12_client(lapps_server, certs):
    srv = lapps_server(settings={"server": {"tls": {
        "enabled": True, "min_version": "1.3",
        "cert": str(certs / "localhost.crt"), "key": str(certs / "localhost.key")}}}, wait=False)
    srv.wait_log("serving")
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        connect(f"wss://localhost:{srv.port}/echo", ssl_context=ctx, timeout=5)
    ctx13 = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with connect(f"wss://localhost:{srv.port}/echo", ssl_context=ctx13) as c:
        c.send_text("1.3")
        assert c.recv(timeout=5) == (1, b"1.3")


def test_missing_certificate_stops_the_start_naming_the_file(tmp_path, certs):
    config = tmp_path / "lapps.toml"
    config.write_text(f'[server]\nservices_dir = "{REPO / "services"}"\n'
                      f'[server.tls]\nenabled = true\ncert = "nowhere.crt"\nkey = "{certs / "localhost.key"}"\n'
                      '[services.echo]\n')
    result = run_cli("--config", str(config), "--check-config")
    assert result.returncode == 1
    assert "server.tls.cert" in result.stderr and "nowhere.crt" in result.stderr


def test_a_key_that_does_not_match_the_certificate_stops_the_start(tmp_path, certs):
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], check=True, capture_output=True)
    config = tmp_path / "lapps.toml"
    config.write_text(f'[server]\nservices_dir = "{REPO / "services"}"\n'
                      f'[server.tls]\nenabled = true\ncert = "{certs / "localhost.crt"}"\nkey = "{other}"\n'
                      '[services.echo]\n')
    result = run_cli("--config", str(config), "--check-config")
    assert result.returncode == 1 and "server.tls" in result.stderr

"""cws over wss:// against real TLS servers: our own server, and a stand-in for an exchange.

Certificates: `make certs` (a development CA and a localhost/127.0.0.1 certificate), plus a
certificate for the exchanges' host names signed by the same CA. `cws_connect_to` sends the
original's hard-wired addresses (wss://127.0.0.1:5083, wss://api.bitfinex.com) to local
servers while TLS still verifies the names in the URIs, so the original's files run unchanged
and no byte leaves this machine.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from websockets.sync.server import serve

import conftest
from conftest import REPO, free_port
from lapps.lua.modules.cws import install_cws
from lapps.lua.modules.cws_tls import TlsOptions
from lapps.lua.runtime import new_runtime
from lapps.lua.values import LuaValues
from test_cws import run

ORIGINAL = REPO.parent / "shared" / "original-lapps"
EXCHANGE_NAMES = ("api.bitfinex.com", "www.bitmex.com")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    subprocess.run(["make", "-s", "certs", f"CERTS={folder}"], cwd=REPO, check=True, capture_output=True)
    # the exchanges' names, signed by the same development CA
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in EXCHANGE_NAMES) + "\n")
    for cmd in (["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=exchange",
                 "-keyout", "exchange.key", "-out", "exchange.csr"],
                ["openssl", "x509", "-req", "-in", "exchange.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-extfile", "ext.cnf", "-out", "exchange.crt"]):
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True)
    return folder


class Exchange:
    """A wss:// server in a thread that answers like a market-data feed: a greeting, then one
    reply per subscription with the channel named in it."""

    def __init__(self, certs: Path) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs / "exchange.crt", certs / "exchange.key")
        self.port = free_port()
        self.received: list[str] = []
        self.server = serve(self.handle, "127.0.0.1", self.port, ssl=ctx)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, ws) -> None:
        ws.send(json.dumps({"event": "info", "version": 2}))
        for message in ws:
            self.received.append(message)
            ws.send(json.dumps({"event": "subscribed", "request": json.loads(message)}))
            ws.send(json.dumps(["ticker", 101.25, 300]))


@pytest.fixture(scope="module")
def exchange(certs):
    server = Exchange(certs)
    yield server
    server.server.shutdown()


def cws_lua(tmp_path: Path, options: TlsOptions):
    runtime = new_runtime("cwstls", str(tmp_path))
    runtime.lua.globals().cws = install_cws(runtime.lua, LuaValues(runtime.lua), options)
    return runtime.lua


def test_wss_with_the_ca_file_opens_and_exchanges_messages(tmp_path, certs, exchange):
    lua = cws_lua(tmp_path, TlsOptions(ca_file=str(certs / "ca.crt"),
                                       connect_to={"api.bitfinex.com:443": f"127.0.0.1:{exchange.port}"}))
    send = lua.eval(b'function(ws, h) assert(ws:send(\'{"op": "subscribe"}\')) end')
    log = run(lua, "wss://api.bitfinex.com/ws/2", send)
    assert log[0] == "open true"
    assert log[1] == 'message 1 {"event": "info", "version": 2}'
    assert log[2].startswith('message 1 {"event": "subscribed"')


def test_wss_refuses_a_certificate_the_system_does_not_trust(tmp_path, exchange):
    lua = cws_lua(tmp_path, TlsOptions(connect_to={"api.bitfinex.com:443": f"127.0.0.1:{exchange.port}"}))
    log = run(lua, "wss://api.bitfinex.com/ws/2")
    assert len(log) == 2, log
    assert log[0].startswith("error TLS: the certificate of api.bitfinex.com:443 is not trusted: "
                             "unable to get local issuer certificate"), log
    assert log[1].startswith("close 1006")


def test_wss_refuses_a_certificate_for_another_name(tmp_path, certs, exchange):
    lua = cws_lua(tmp_path, TlsOptions(ca_file=str(certs / "ca.crt"),
                                       connect_to={"example.org:443": f"127.0.0.1:{exchange.port}"}))
    log = run(lua, "wss://example.org/")
    assert log[0].startswith("error TLS: the certificate of example.org:443 is not trusted: "
                             "Hostname mismatch"), log


def test_cws_verify_false_accepts_a_development_certificate(tmp_path, exchange):
    lua = cws_lua(tmp_path, TlsOptions(verify=False,
                                       connect_to={"example.org:8443": f"127.0.0.1:{exchange.port}"}))
    log = run(lua, "wss://example.org:8443/")
    assert log[0] == "open true" and log[1].startswith("message 1 ")


def test_wss_to_a_plain_port_fails_with_a_tls_error(tmp_path, certs):
    with socket_that_says(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        lua = cws_lua(tmp_path, TlsOptions(ca_file=str(certs / "ca.crt")))
        log = run(lua, f"wss://127.0.0.1:{port}/")
    assert log[0].startswith("error TLS handshake with 127.0.0.1:"), log
    assert log[-1].startswith("close 1006")


def test_a_ca_file_that_is_no_certificate_is_said_at_cws_new(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    lua = cws_lua(tmp_path, TlsOptions(ca_file=str(bad)))
    log = run(lua, "wss://example.org/")
    assert log[0].startswith(f"new failed: cws:new: cannot load cws_ca_file {bad}"), log


class socket_that_says:
    """A one-shot TCP server on a free port that writes `reply` to whoever connects."""

    def __init__(self, reply: bytes) -> None:
        import socket
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.reply = reply

    def __enter__(self) -> int:
        def answer() -> None:
            conn, _ = self.sock.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(self.reply)
        threading.Thread(target=answer, daemon=True).start()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# -- the original's applications, unchanged ---------------------------------------------------

needs_original = pytest.mark.skipif(not ORIGINAL.is_dir(),
                                    reason=f"the original LAppS files are not here ({ORIGINAL})")


@needs_original
def test_original_benchmark_runs_over_wss_against_our_echo(lapps_server, certs, monkeypatch):
    port = free_port()
    monkeypatch.setattr(conftest, "free_port", lambda: port)   # the server's port, known in advance
    server = lapps_server(
        {"benchmark": {"standalone": True, "preload": ["cws", "time", "nap"],
                       "cws_ca_file": str(certs / "ca.crt"),
                       "cws_connect_to": {"127.0.0.1:5083": f"127.0.0.1:{port}"}}},
        copy={"benchmark": ORIGINAL / "apps" / "benchmark"},
        settings={"server": {"tls": {"enabled": True, "cert": str(certs / "localhost.crt"),
                                                   "key": str(certs / "localhost.key")}}},
        wait=False)
    server.wait_log(r"\[benchmark\] Sockets connected: 800", timeout=60)
    lines = server.wait_log(r"\[benchmark\] \d+ messages receved per \d+ms", timeout=15, count=2)
    rates = [int(re.search(r"\] (\d+) messages", line).group(1)) for line in lines]
    assert all(r > 0 for r in rates), lines
    assert "Error" not in server.log() and "failed" not in server.log()


@needs_original
@pytest.mark.parametrize("app,host", [("bitfinex", "api.bitfinex.com"), ("bitmex", "www.bitmex.com")])
def test_original_exchange_clients_connect_over_wss(lapps_server, certs, exchange, app, host):
    server = lapps_server(
        {app: {"standalone": True, "preload": ["cws"], "cws_ca_file": str(certs / "ca.crt"),
               "cws_connect_to": {f"{host}:443": f"127.0.0.1:{exchange.port}"}}},
        copy={app: ORIGINAL / "examples" / app})
    server.wait_log(rf"\[{app}\] onopen", timeout=10)
    server.wait_log(rf'\[{app}\] \["ticker", 101.25, 300\]', timeout=10)
    assert any('"subscribe"' in m for m in exchange.received)

"""`lapps.client` over real sockets.

Raw services: against the real server (`python -m lapps`, one worker, its echo service at
/echo) started by conftest's module fixture. LAppS protocol: the server does not speak it
yet, so a small fake server thread stands in (`FakeLappsServer`, test scaffolding: a real
socket, the real `ServerProtocol`, cbor2) that answers requests in order and pushes an
OON on channel 5 before every response. wss:// is checked against the same fake with a
self-signed certificate made by `openssl`.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time

import cbor2
import pytest

from conftest import free_port
from lapps.client import (Client, ClientError, ConnectionClosed, HandshakeRejected, LappsProtocolError,
                          LappsRequestError, _parse_url, connect)
from lapps.ws.constants import Opcode
from lapps.ws.protocol import EV_REQUEST, ServerProtocol, State

TEXT, BINARY = Opcode.TEXT, Opcode.BINARY


# ---------------------------------------------------------------------- URLs

@pytest.mark.parametrize("url, parsed", [
    ("ws://127.0.0.1:5083/echo", (False, "127.0.0.1", 5083, "127.0.0.1:5083", "/echo")),
    ("ws://example.com", (False, "example.com", 80, "example.com", "/")),
    ("ws://example.com:80/a?b=c", (False, "example.com", 80, "example.com", "/a?b=c")),
    ("wss://example.com/x", (True, "example.com", 443, "example.com", "/x")),
    ("ws://[::1]:9000/e", (False, "::1", 9000, "[::1]:9000", "/e")),
])
def test_parse_url(url, parsed):
    assert _parse_url(url) == parsed


@pytest.mark.parametrize("url", ["http://example.com/", "ws:///path", "ws://example.com/#frag", "example.com"])
def test_parse_url_rejects(url):
    with pytest.raises(ValueError):
        _parse_url(url)


# ---------------------------------------------------------------------- raw services, real server

@pytest.fixture(scope="module")
def server(lapps_server_module):
    return lapps_server_module({"echo": {"subprotocols": ["chat.v1"]}}, workers=1)


@pytest.fixture
def echo(server):
    with connect(f"ws://127.0.0.1:{server.port}/echo", timeout=5) as client:
        yield client


def test_send_text_is_echoed(echo):
    echo.send_text("héllo wörld")
    assert echo.recv() == (TEXT, "héllo wörld".encode())


def test_send_binary_is_echoed(echo):
    echo.send_binary(bytes(range(256)))
    assert echo.recv() == (BINARY, bytes(range(256)))


def test_large_and_many_messages_come_back_in_order(echo):
    big = bytes(range(256)) * 4096       # 1 MiB
    echo.send_binary(big)
    for i in range(50):
        echo.send_text(f"message {i}")
    assert echo.recv() == (BINARY, big)
    assert [echo.recv()[1] for _ in range(50)] == [f"message {i}".encode() for i in range(50)]


def test_ping_gets_its_pong_and_keeps_messages(echo):
    echo.send_text("before")
    echo.ping(b"alive?")
    assert echo.recv() == (TEXT, b"before")


def test_recv_timeout_raises_and_the_connection_stays_usable(echo):
    with pytest.raises(TimeoutError):
        echo.recv(timeout=0.2)
    echo.send_text("still here")
    assert echo.recv() == (TEXT, b"still here")


def test_close_returns_the_server_code(server):
    client = connect(f"ws://127.0.0.1:{server.port}/echo")
    client.send_text("x")
    assert client.close() == (1000, "")
    assert client.sock.fileno() == -1
    assert client.close() == (1000, "")          # a second close reports how it ended
    with pytest.raises(ConnectionClosed) as exc:
        client.send_text("after close")
    assert exc.value.code == 1000


def test_close_with_a_code_and_reason(server):
    client = connect(f"ws://127.0.0.1:{server.port}/echo")
    assert client.close(4000, "custom") == (4000, "")   # the server echoes the code


def test_context_manager_closes(server):
    with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        client.send_binary(b"z")
        assert client.recv() == (BINARY, b"z")
    assert client.closed == (1000, "") and client.sock.fileno() == -1


def test_unknown_path_is_rejected_with_404(server):
    with pytest.raises(HandshakeRejected) as exc:
        connect(f"ws://127.0.0.1:{server.port}/nowhere")
    assert exc.value.status == 404
    assert b"/nowhere" in exc.value.body
    assert isinstance(exc.value, ClientError)


def test_subprotocol_is_negotiated(server):
    with connect(f"ws://127.0.0.1:{server.port}/echo", subprotocols=("other", "chat.v1"),
                 headers={"Origin": "http://127.0.0.1"}) as client:
        assert client.subprotocol == "chat.v1"
    with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        assert client.subprotocol is None


def test_connection_refused_is_an_os_error():
    with pytest.raises(ConnectionRefusedError):
        connect(f"ws://127.0.0.1:{free_port()}/echo", timeout=2)


def test_handshake_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:      # accepts (backlog), never answers
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{silent.getsockname()[1]}/echo", timeout=0.3)


# ---------------------------------------------------------------------- LAppS protocol, fake server

class FakeLappsServer:
    """Scaffolding: one thread serving one connection at a time with `ServerProtocol`.

    A binary message with a `cid` is a notification: recorded, never answered. Any other is
    a request: first an OON `{cid: 5, message: [n]}` (n counts requests), then the response.
    Methods: `echo` (result: [the request map]), `fail` (error -32000), `slow` (sleeps
    params[0] s first), `notifications` (result: those recorded), `error_oon` (an error
    object on cid 3, then result []), `bye` (no response; close 1001 "bye"). Text is echoed.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.notifications: list[dict] = []
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return                          # listener closed: the test is over
            try:
                if self.tls is not None:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                with sock:
                    self._connection(sock)
            except (OSError, ssl.SSLError):
                continue                        # the client went away mid-test

    def _connection(self, sock: socket.socket) -> None:
        proto = ServerProtocol()
        while proto.state != State.CLOSED:
            data = sock.recv(65536)
            if not data:
                proto.receive_eof()
            proto.receive_data(data)
            for kind, value in proto.events:
                if kind == EV_REQUEST:
                    proto.accept()
                elif kind == TEXT:
                    proto.send(TEXT, value)
                elif kind == BINARY:
                    self._answer(proto, cbor2.loads(value))
            proto.events.clear()
            sock.sendall(proto.out)
            proto.out.clear()

    def _answer(self, proto: ServerProtocol, msg: dict) -> None:
        if "cid" in msg:
            self.notifications.append(msg)
            return
        self.requests += 1
        proto.send(BINARY, cbor2.dumps({"cid": 5, "message": [self.requests]}))
        method, params = msg["method"], msg.get("params", [])
        result: object = [msg]
        if method == "fail":
            error = {"code": -32000, "message": "it failed", "data": {"why": "asked to"}}
            return proto.send(BINARY, cbor2.dumps({"cid": 0, "status": 0, "error": error}))
        if method == "bye":
            proto.close(1001, "bye")
            return
        if method == "slow":
            time.sleep(params[0])
        elif method == "notifications":
            result = self.notifications
        elif method == "error_oon":
            error = {"code": -32001, "message": "channel 3 failed"}
            proto.send(BINARY, cbor2.dumps({"cid": 3, "status": 0, "error": error}))
            result = []
        proto.send(BINARY, cbor2.dumps({"cid": 0, "status": 1, "result": result}))

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the fake server is stuck in a connection"


@pytest.fixture
def fake():
    server = FakeLappsServer()
    yield server
    server.close()


@pytest.fixture
def lapps(fake):
    with connect(f"ws://127.0.0.1:{fake.port}/app", timeout=5) as client:
        yield client


def test_request_sends_a_cbor_request_and_returns_the_result(lapps):
    assert lapps.request("echo", ["a", 1, {"k": None}]) == [
        {"lapps": 1, "method": "echo", "params": ["a", 1, {"k": None}]}]
    assert lapps.request("echo") == [{"lapps": 1, "method": "echo"}]   # no params: no key


def test_error_response_raises_with_code_message_and_data(lapps):
    with pytest.raises(LappsRequestError) as exc:
        lapps.request("fail", [])
    assert (exc.value.code, exc.value.message, exc.value.data) == (-32000, "it failed", {"why": "asked to"})
    assert lapps.request("echo", [2])[0]["params"] == [2]     # the connection goes on


def test_oons_between_responses_are_queued_per_channel(lapps):
    for i in range(3):
        lapps.request("echo", [i])
    assert [lapps.next_oon(5) for _ in range(3)] == [[1], [2], [3]]
    with pytest.raises(TimeoutError):
        lapps.next_oon(5, timeout=0.2)


def test_oon_callback_gets_queued_then_new_notifications(lapps):
    lapps.request("echo")
    got = []
    lapps.on_oon(5, got.append)          # the one already queued is handed over at once
    assert got == [[1]]
    lapps.request("echo")
    lapps.request("echo")
    assert got == [[1], [2], [3]]
    lapps.on_oon(5, None)
    lapps.request("echo")
    assert lapps.next_oon(5) == [4] and got == [[1], [2], [3]]


def test_error_object_on_an_oon_channel(lapps):
    assert lapps.request("error_oon") == []
    with pytest.raises(LappsRequestError) as exc:
        lapps.next_oon(3)
    assert exc.value.code == -32001
    got = []
    lapps.on_oon(3, got.append)
    lapps.request("error_oon")
    assert isinstance(got[0], LappsRequestError) and got[0].message == "channel 3 failed"


def test_poll_runs_callbacks_without_a_request(fake):
    with connect(f"ws://127.0.0.1:{fake.port}/app") as client:
        got = []
        client.on_oon(5, got.append)
        client.notify("nothing", cid=9)   # not answered: no OON either
        client.poll(0.2)
        assert got == []
        client._send_lapps("echo", None, None)   # a request whose response we never read
        client.poll(0.3)
        assert got == [[1]]


def test_notify_is_sent_with_its_cid_and_never_answered(lapps):
    lapps.notify("subscribe", [{"channel": 7}], cid=7)
    lapps.notify("ping", cid=8)
    assert lapps.request("notifications") == [
        {"lapps": 1, "method": "subscribe", "params": [{"channel": 7}], "cid": 7},
        {"lapps": 1, "method": "ping", "cid": 8}]
    assert lapps.next_oon(5) == [1]      # only the request produced an OON


def test_late_response_of_a_timed_out_request_is_skipped(lapps):
    with pytest.raises(TimeoutError):
        lapps.request("slow", [0.5], timeout=0.1)
    assert lapps.request("echo", ["next"])[0]["params"] == ["next"]


def test_server_close_while_waiting_raises_connection_closed(lapps):
    with pytest.raises(ConnectionClosed) as exc:
        lapps.request("bye")
    assert (exc.value.code, exc.value.reason) == (1001, "bye")
    assert lapps.next_oon(5) == [1]      # what came before the close is still readable
    assert lapps.close() == (1001, "bye")


@pytest.mark.parametrize("call, error", [
    (lambda c: c.request("a.b"), ValueError),
    (lambda c: c.request("_private"), ValueError),
    (lambda c: c.request("m", {"not": "a list"}), TypeError),
    (lambda c: c.notify("m", cid="5"), TypeError),
    (lambda c: c.next_oon(0), ValueError),
])
def test_misuse_raises(lapps, call, error):
    with pytest.raises(error):
        call(lapps)


def test_text_message_on_a_lapps_connection_is_a_protocol_error(lapps):
    lapps.send_text("not cbor")
    with pytest.raises(LappsProtocolError):
        lapps.request("echo")


# ---------------------------------------------------------------------- wss://

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_fake(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = FakeLappsServer(tls=context)
    yield server
    server.close()


def test_wss_with_a_trusted_certificate(tls_fake, certificate):
    context = ssl.create_default_context(cafile=str(certificate[0]))
    with connect(f"wss://127.0.0.1:{tls_fake.port}/app", ssl_context=context) as client:
        assert isinstance(client, Client)
        client.send_text("over tls")
        assert client.recv() == (TEXT, b"over tls")
        assert client.request("echo", [1])[0]["params"] == [1]


def test_wss_with_an_untrusted_certificate_fails(tls_fake):
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(f"wss://127.0.0.1:{tls_fake.port}/app", timeout=3)

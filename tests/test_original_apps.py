"""The original LAppS applications (../shared/original-lapps), run unchanged on the real server.

Their files are copied as they are into the test server's services folder; the config says
what the original's per-service JSON says (protocol, target, standalone, preloads), without
the modules we do not have (pam_auth). Where the folder is missing the tests say SKIPPED.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Server, free_port, run_cli
from lapps.client import ConnectionClosed, HandshakeRejected, LappsRequestError, connect

ORIGINAL = Path(__file__).resolve().parent.parent.parent / "shared" / "original-lapps"
EXAMPLES = ORIGINAL / "examples"

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(),
                                reason=f"the original LAppS files are not here ({ORIGINAL})")

ECHO_LAPPS = {"protocol": "LAppS", "request_target": "/echo_lapps", "preload": ["time", "murmur", "mqr"]}
TIME_BROADCAST = {"standalone": True, "preload": ["nap", "time"]}
BROADCAST_BLOB = {"standalone": True, "preload": ["nap"]}


@pytest.fixture
def original(lapps_server):
    """echo_lapps, time_broadcast and broadcast_blob of the original, on one worker (one Lua state
    holds the logins, as in the original)."""
    names = ("echo_lapps", "time_broadcast", "broadcast_blob")
    return lapps_server({"echo_lapps": ECHO_LAPPS, "time_broadcast": TIME_BROADCAST,
                         "broadcast_blob": BROADCAST_BLOB},
                        copy={name: EXAMPLES / name for name in names}, workers=1)


def login(client, user: str = "admin", password: str = "admin") -> int:
    result = client.request("login", [{"user": user, "password": password}])
    authkey = result[0]["authkey"]
    assert isinstance(authkey, int) and authkey >= 1
    return authkey


def test_original_echo_lapps_login_echo_subscribe_logout(original):
    with connect(f"ws://127.0.0.1:{original.port}/echo_lapps") as client:
        authkey = login(client)
        for i in range(3):   # the second request is where the number-key lookup used to fail
            assert client.request("echo", [{"authkey": authkey}, "hello", i]) == [{"authkey": authkey}, "hello", i]
        client.notify("subscribe", [{"authkey": authkey}], cid=5)
        client.notify("subscribe", [{"authkey": authkey}], cid=6)
        tick = client.next_oon(5, timeout=5)
        assert re.fullmatch(r"Server time: .+", tick[0])
        blob = client.next_oon(6, timeout=8)     # broadcast_blob sends every 5 s
        assert blob[:5] == [1, 2, 3, 4, 5] and len(blob[5]) > 4000
        assert client.request("echo", [{"authkey": authkey}, "after"]) == [{"authkey": authkey}, "after"]
        client.notify("logout", [{"authkey": authkey}], cid=0)
        with pytest.raises(ConnectionClosed) as closed:
            client.request("echo", [{"authkey": authkey}, "gone"], timeout=5)
        assert closed.value.code == 1000
    assert "Not authenticated" not in original.log()


def test_original_echo_lapps_refuses_a_wrong_password_and_a_stolen_key(original):
    with connect(f"ws://127.0.0.1:{original.port}/echo_lapps") as owner:
        authkey = login(owner, "guest", "guest")
        with connect(f"ws://127.0.0.1:{original.port}/echo_lapps") as thief:
            with pytest.raises(LappsRequestError) as refused:
                thief.request("echo", [{"authkey": authkey}, "x"], timeout=5)
            assert refused.value.code == -32000
            with pytest.raises(ConnectionClosed) as closed:
                thief.request("echo", [{"authkey": authkey}, "x"], timeout=5)
            assert closed.value.code == 1000
        assert owner.request("echo", [{"authkey": authkey}, "still mine"]) == [{"authkey": authkey}, "still mine"]
    with connect(f"ws://127.0.0.1:{original.port}/echo_lapps") as client:
        with pytest.raises(LappsRequestError) as refused:
            client.request("login", [{"user": "admin", "password": "wrong"}], timeout=5)
        assert (refused.value.code, refused.value.message) == (10, "Authentication error")


def test_original_raw_echo(lapps_server):
    server = lapps_server(copy={"echo": EXAMPLES / "echo"})     # the original's echo.lua at /echo
    with connect(f"ws://127.0.0.1:{server.port}/echo") as client:
        client.send_text("hello")
        assert client.recv(timeout=5) == (1, b"hello")
        client.send_binary(bytes(range(256)))
        assert client.recv(timeout=5) == (2, bytes(range(256)))
    server.wait_log(r"\[echo\] echo::onStart")


def test_original_examples_serve_on_the_config_migrated_from_the_originals(tmp_path):
    """examples/conf/ws.json + lapps.json through `lapps migrate-config`, the examples folder as
    the services folder, as it is: echo_lapps logs in, echoes and gets the server time; the
    mqr pair runs; echo has auto_start = false and nothing that starts depends on it: 404."""
    out = tmp_path / "lapps.toml"
    conf = EXAMPLES / "conf"
    done = run_cli("migrate-config", str(conf / "ws.json"), str(conf / "lapps.json"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lapps", "--config", str(out), "--port", str(port),
                                 "--ip", "127.0.0.1", "--admin-port", "0"],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = Server(proc, port, out, log_path, workers=3)
    try:
        server.wait_log(r"lapps\[worker \d+\] INFO serving", count=3, timeout=15)
        with connect(f"ws://127.0.0.1:{port}/echo_lapps") as client:
            authkey = login(client)
            assert client.request("echo", [{"authkey": authkey}, "migrated"]) == [{"authkey": authkey}, "migrated"]
            client.notify("subscribe", [{"authkey": authkey}], cid=5)
            assert client.next_oon(5, timeout=5)[0].startswith("Server time: ")
        server.wait_log(r"\[mqr_receiver\] Received \d+ messages per", count=2, timeout=10)
        with pytest.raises(HandshakeRejected) as refused:
            connect(f"ws://127.0.0.1:{port}/echo", timeout=5)
        assert refused.value.status == 404
    finally:
        server.stop()

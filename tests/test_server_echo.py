"""The real server echoes over real sockets; process names, balancing and the CLI around it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect as ws_connect_async
from websockets.sync.client import connect as ws_connect

from conftest import REPO, Server, free_port, open_clients, run_cli, write_config
from lapps.ws.constants import Opcode
from wsclient import connect, echo_ok


@pytest.fixture(scope="module")
def server(lapps_server_module):
    """One echo server with two workers, shared by the tests that leave it as they found it."""
    return lapps_server_module(workers=2, listeners=2)


def url(server, path: str = "/echo") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# ---------------------------------------------------------------------- echo


def test_websockets_client_gets_text_and_binary_echoed(server):
    with ws_connect(url(server)) as ws:
        ws.send("héllo, wörld")
        assert ws.recv(timeout=5) == "héllo, wörld"
        ws.send(b"\x00\x01\xfe\xff")
        assert ws.recv(timeout=5) == b"\x00\x01\xfe\xff"
        ws.send("")
        assert ws.recv(timeout=5) == ""


def test_raw_client_gets_text_and_binary_echoed(server):
    with connect(server.port) as c:
        assert c.status == 101
        assert c.headers["upgrade"].lower() == "websocket"
        c.send_frame(Opcode.TEXT, "ünïcode".encode())
        assert c.recv_message() == (Opcode.TEXT, "ünïcode".encode())
        c.send_frame(Opcode.BINARY, bytes(range(256)))
        assert c.recv_message() == (Opcode.BINARY, bytes(range(256)))
        c.send_close(1000)
        assert c.recv_close()[0] == 1000
        c.expect_tcp_close()


def test_one_mib_message_is_echoed(server):
    payload = os.urandom(1 << 20)
    with ws_connect(url(server), max_size=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
    with connect(server.port) as c:
        c.send_frame(Opcode.BINARY, payload)
        assert c.recv_message(timeout=10) == (Opcode.BINARY, payload)


def test_fragmented_message_is_echoed_whole(server):
    with connect(server.port) as c:
        c.send_frame(Opcode.TEXT, b"frag", fin=False)
        c.send_frame(Opcode.CONTINUATION, b"ment", fin=False)
        c.send_frame(Opcode.PING, b"in between")        # control frames may interleave
        c.send_frame(Opcode.CONTINUATION, b"ed", fin=True)
        pong = c.recv_frame()
        assert (pong.opcode, pong.payload) == (Opcode.PONG, b"in between")
        assert c.recv_message() == (Opcode.TEXT, b"fragmented")
    with ws_connect(url(server)) as ws:
        ws.send(iter([b"bin", b"ary", b" parts"]))
        assert ws.recv(timeout=5) == b"binary parts"


def test_fifty_concurrent_clients_each_get_twenty_messages_echoed(server):
    async def client(n: int) -> list[str]:
        async with ws_connect_async(url(server)) as ws:
            got = []
            for i in range(20):
                await ws.send(f"client {n} message {i}")
                got.append(await asyncio.wait_for(ws.recv(), 10))
            return got

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(client(n) for n in range(50)))

    results = asyncio.run(main())
    for n, got in enumerate(results):
        assert got == [f"client {n} message {i}" for i in range(20)]


# ---------------------------------------------------------------------- process names


def title(pid: int) -> str:
    """The process title as psutil and ps show it."""
    return " ".join(part for part in psutil.Process(pid).cmdline() if part).strip()


def ps_args(pid: int) -> str:
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()


def test_master_and_workers_have_process_titles(server):
    assert title(server.pid) == "lapps: master"
    assert ps_args(server.pid) == "lapps: master"
    workers = server.worker_pids()
    assert len(workers) == 2
    assert sorted(title(pid) for pid in workers) == ["lapps: worker 1", "lapps: worker 2"]
    assert sorted(ps_args(pid) for pid in workers) == ["lapps: worker 1", "lapps: worker 2"]


def test_master_and_workers_have_kernel_names(server):
    assert Path(f"/proc/{server.pid}/comm").read_text().strip() == "lapps-master"
    names = sorted(Path(f"/proc/{pid}/comm").read_text().strip() for pid in server.worker_pids())
    assert names == ["lapps-worker-1", "lapps-worker-2"]


# ---------------------------------------------------------------------- balancing


def test_balancer_spreads_connections_over_workers(lapps_server):
    server = lapps_server(workers=4)
    clients, owners = open_clients(server, 8)
    try:
        assert len(set(owners)) > 1, f"all 8 connections on one worker: {owners}"
        assert set(owners) <= set(server.worker_pids())
    finally:
        for c in clients:
            c.close()


def test_balancer_gives_each_of_four_workers_two_of_eight_sequential_connections(lapps_server):
    server = lapps_server(workers=4)
    clients, owners = open_clients(server, 8)
    try:
        per_worker = Counter(owners)
        assert sorted(per_worker.values()) == [2, 2, 2, 2], f"connections per worker: {dict(per_worker)}"
    finally:
        for c in clients:
            c.close()


# ---------------------------------------------------------------------- command line


def test_check_config_accepts_a_good_config(tmp_path):
    config = write_config(tmp_path, {"echo": {}}, {}, {}, 5083)
    result = run_cli("--config", str(config), "--check-config")
    assert result.returncode == 0, result.stderr
    assert str(config) in result.stdout


def test_check_config_rejects_a_bad_value_naming_the_key(tmp_path):
    config = write_config(tmp_path, {"echo": {}}, {}, {"limits": {"max_headers": -1}}, 5083)
    result = run_cli("--config", str(config), "--check-config")
    assert result.returncode == 1
    assert "limits.max_headers" in result.stderr


def test_print_config_prints_toml_that_parses(tmp_path):
    config = write_config(tmp_path, {"echo": {"max_inbound_message_size": 4096}}, {}, {}, 6123)
    result = run_cli("--config", str(config), "--print-config", "--workers", "3")
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout)
    assert printed["server"]["port"] == 6123
    assert printed["server"]["workers"] == 3
    assert printed["services"]["echo"]["max_inbound_message_size"] == 4096


def test_lapps_config_env_is_used_without_config_flag(tmp_path):
    good = write_config(tmp_path / "good", {"echo": {}}, {}, {}, 6124)
    result = run_cli("--print-config", env={"LAPPS_CONFIG": str(good)})
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["server"]["port"] == 6124
    bad = write_config(tmp_path / "bad", {"echo": {}}, {}, {"limits": {"max_headers": -1}}, 6125)
    result = run_cli("--check-config", env={"LAPPS_CONFIG": str(bad)})
    assert result.returncode == 1
    assert "limits.max_headers" in result.stderr


def test_lapps_config_env_starts_the_server(lapps_server, tmp_path):
    """A server started with no --config at all serves what $LAPPS_CONFIG says."""
    port = free_port()
    config = write_config(tmp_path / "env", {"echo": {}}, {}, {}, port)
    log_path = tmp_path / "env.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lapps", "--workers", "1", "--listeners", "1"],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "LAPPS_CONFIG": str(config)})
    server = Server(proc, port, config, log_path, 1)
    lapps_server.servers.append(server)       # torn down with the others
    server.wait_ready()
    assert str(config) in server.log()
    assert echo_ok(port)

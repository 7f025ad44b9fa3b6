"""The admin endpoint (/metrics, /healthz, /readyz, /status) and `lapps status`, against the
real server; plus the slot tables and the status table on their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

import wsclient
from conftest import REPO, free_port, open_clients, wait_for
from lapps.admin import format_status
from lapps.ipc.slots import CLOSE_CODES, HANDSHAKE_RESULTS, SlotBlock, WorkerState

FAMILIES = {
    "lapps_connections": "gauge",
    "lapps_handshakes": "counter",
    "lapps_messages": "counter",
    "lapps_bytes": "counter",
    "lapps_close_codes": "counter",
    "lapps_lua_errors": "counter",
    "lapps_outbound_backlog_bytes": "gauge",
    "lapps_dropped_messages": "counter",
    "lapps_worker_restarts": "counter",
    "lapps_process_resident_memory_bytes": "gauge",
    "lapps_process_cpu_seconds": "counter",
}


# ---------------------------------------------------------------------- helpers


def get(port: int, path: str, timeout: float = 3.0) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of GET http://127.0.0.1:port/path, errors included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def samples(port: int) -> list[tuple[str, dict[str, str], float]]:
    status, body, _ = get(port, "/metrics")
    assert status == 200
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(body)
            for s in family.samples]


def total(port: int, name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(v for n, lab, v in samples(port) if n == name and all(lab.get(k) == x for k, x in labels.items()))


def wait_total(port: int, name: str, expected: float, timeout: float = 5.0, **labels: str) -> float:
    """Poll until the sum reaches `expected` (exactly); the last value seen."""
    seen = wait_for(lambda: (lambda v: v if v == expected else None)(total(port, name, **labels)), timeout)
    return seen if seen is not None else total(port, name, **labels)


def status_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lapps", "status", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=20)


def close_all(clients) -> None:
    for c in clients:
        c.send_close(1000)
        assert c.recv_close()[0] == 1000
        c.close()


@pytest.fixture(scope="module")
def server(lapps_server_module):
    """Two workers, the admin endpoint on a free port (`server.admin`)."""
    admin = free_port()
    s = lapps_server_module(workers=2, settings={"admin": {"port": admin}})
    s.admin = admin
    assert wait_for(lambda: get(admin, "/readyz")[0] == 200, 5), s.log()
    return s


# ---------------------------------------------------------------------- /metrics


def test_metrics_has_every_family(server):
    status, body, headers = get(server.admin, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    families = {f.name: f.type for f in text_string_to_metric_families(body)}
    for name, kind in FAMILIES.items():
        assert families.get(name) == kind, f"{name}: {families.get(name)}"
    workers = {lab["worker"] for n, lab, _ in samples(server.admin) if n == "lapps_messages_total"}
    assert workers == {"1", "2"}
    processes = {lab["process"] for n, lab, _ in samples(server.admin)
                 if n == "lapps_process_resident_memory_bytes"}
    assert processes == {"master", "worker 1", "worker 2"}
    assert total(server.admin, "lapps_process_resident_memory_bytes", process="master") > 1_000_000


def test_connections_per_service(server):
    clients, _ = open_clients(server, 10)
    try:
        assert wait_total(server.admin, "lapps_connections", 10, service="echo") == 10
        per_worker = [total(server.admin, "lapps_connections", service="echo", worker=w) for w in ("1", "2")]
        assert sum(per_worker) == 10 and min(per_worker) > 0   # the balancer spread them
    finally:
        close_all(clients)
    assert wait_total(server.admin, "lapps_connections", 0, service="echo") == 0


def test_message_counters_move_with_traffic(server):
    before_in = total(server.admin, "lapps_messages_total", direction="in")
    before_out = total(server.admin, "lapps_messages_total", direction="out")
    before_bytes = total(server.admin, "lapps_bytes_total", direction="in")
    with wsclient.connect(server.port) as c:
        assert c.status == 101
        for i in range(5):
            c.send_text(f"message {i}")
            assert c.recv_message()[1] == f"message {i}".encode()
        assert wait_total(server.admin, "lapps_messages_total", before_in + 5, direction="in") == before_in + 5
        assert wait_total(server.admin, "lapps_messages_total", before_out + 5, direction="out") == before_out + 5
        assert total(server.admin, "lapps_bytes_total", direction="in") > before_bytes + 5 * 9
        c.send_close(1000)
        c.recv_close()


def test_handshake_statuses_are_counted(server):
    port = server.admin
    before_404 = total(port, "lapps_handshakes_total", status="404")
    before_101 = total(port, "lapps_handshakes_total", status="101")
    before_426 = total(port, "lapps_handshakes_total", status="426")
    with wsclient.connect(server.port, "/no-such-service") as c:
        assert c.status == 404
    with wsclient.connect(server.port, version="8") as c:
        assert c.status == 426
    assert wait_total(port, "lapps_handshakes_total", before_404 + 1, status="404") == before_404 + 1
    assert wait_total(port, "lapps_handshakes_total", before_426 + 1, status="426") == before_426 + 1
    with wsclient.connect(server.port) as c:
        assert c.status == 101
        assert wait_total(port, "lapps_handshakes_total", before_101 + 1, status="101") == before_101 + 1
        c.send_close(1000)
        c.recv_close()
    statuses = {lab["status"] for n, lab, _ in samples(port) if n == "lapps_handshakes_total"}
    assert statuses >= set(HANDSHAKE_RESULTS)


def test_close_codes_sent_and_received(server):
    port = server.admin
    before_sent = total(port, "lapps_close_codes_total", direction="sent", code="1000")
    before_received = total(port, "lapps_close_codes_total", direction="received", code="1000")
    with wsclient.connect(server.port) as c:
        assert c.status == 101
        c.send_close(1000, "bye")
        assert c.recv_close()[0] == 1000
        c.expect_tcp_close()
    assert wait_total(port, "lapps_close_codes_total", before_sent + 1, direction="sent", code="1000") \
        == before_sent + 1
    assert wait_total(port, "lapps_close_codes_total", before_received + 1, direction="received", code="1000") \
        == before_received + 1
    codes = {lab["code"] for n, lab, _ in samples(port) if n == "lapps_close_codes_total"}
    assert codes == set(CLOSE_CODES)


def test_protocol_error_close_is_sent_and_drop_is_1006(server):
    port = server.admin
    before_1002 = total(port, "lapps_close_codes_total", direction="sent", code="1002")
    before_1006 = total(port, "lapps_close_codes_total", direction="received", code="1006")
    with wsclient.connect(server.port) as c:
        c.send_frame(1, b"unmasked", masked=False)
        assert c.recv_close()[0] == 1002
    with wsclient.connect(server.port) as c:
        assert c.status == 101   # then the TCP connection just goes away
    assert wait_total(port, "lapps_close_codes_total", before_1002 + 1, direction="sent", code="1002") \
        == before_1002 + 1
    assert wait_total(port, "lapps_close_codes_total", before_1006 + 2, direction="received", code="1006") \
        == before_1006 + 2
    assert total(port, "lapps_close_codes_total", direction="sent", code="1006") == 0


# ---------------------------------------------------------------------- probes and /status


def test_health_ready_and_404(server):
    assert get(server.admin, "/healthz")[:2] == (200, "ok\n")
    assert get(server.admin, "/readyz")[:2] == (200, "ready\n")
    assert get(server.admin, "/readyz?verbose=1")[0] == 200
    for path in ("/", "/metricsx", "/status/1", "/favicon.ico"):
        assert get(server.admin, path)[0] == 404, path


def test_status_json(server):
    with wsclient.connect(server.port) as c:
        deadline = time.monotonic() + 2.5   # traffic over more than a sample period: a rate
        n = 0
        while time.monotonic() < deadline:
            c.send_text("x")
            c.recv_message()
            n += 1
        status, body, headers = get(server.admin, "/status")
        c.send_close(1000)
        c.recv_close()
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    master = doc["master"]
    assert master["pid"] == server.pid
    assert master["state"] == "running" and master["ready"] is True
    assert master["uptime_s"] > 0 and master["rss_bytes"] > 0
    workers = doc["workers"]
    assert [w["worker"] for w in workers] == [1, 2]
    assert sorted(w["pid"] for w in workers) == server.worker_pids()
    keys = {"pid", "state", "connections", "websockets", "messages_in", "messages_out",
            "messages_in_per_s", "messages_out_per_s", "rss_bytes", "cpu_percent", "restarts"}
    for w in workers:
        assert keys <= set(w), keys - set(w)
        assert w["state"] == "running"
        assert w["restarts"] == 0
        assert w["rss_bytes"] > 1_000_000
        assert set(w["websockets"]) == {"echo"}
    busy = max(workers, key=lambda w: w["messages_in_per_s"])
    assert busy["messages_in_per_s"] > 1 and busy["messages_out_per_s"] > 1
    assert busy["cpu_percent"] is not None and busy["cpu_percent"] > 0


def test_lapps_status_prints_one_row_per_worker(server):
    for args in (["--admin", f"127.0.0.1:{server.admin}"], ["--config", str(server.config)]):
        out = status_cli(*args)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith(f"master pid {server.pid}, up ")
        assert lines[1].split() == ["WORKER", "PID", "STATE", "CONNS", "MSG/S", "IN", "MSG/S", "OUT",
                                    "RSS", "CPU%", "RESTARTS"]
        rows = [line.split() for line in lines[2:]]
        assert len(rows) == 2
        assert sorted(int(r[1]) for r in rows) == server.worker_pids()
        assert all(r[2] == "running" for r in rows)
    out = status_cli("--admin", f"127.0.0.1:{server.admin}", "--json")
    assert out.returncode == 0 and len(json.loads(out.stdout)["workers"]) == 2


def test_lapps_status_without_an_endpoint(tmp_path):
    out = status_cli("--admin", f"127.0.0.1:{free_port()}")
    assert out.returncode == 1
    assert "cannot reach the admin endpoint at http://127.0.0.1:" in out.stderr
    config = tmp_path / "off.toml"
    config.write_text("[admin]\nport = 0\n")
    out = status_cli("--config", str(config))
    assert out.returncode == 1 and "admin endpoint is off" in out.stderr
    out = status_cli("--admin", "localhost:http")
    assert out.returncode == 1 and "expected HOST:PORT" in out.stderr


def test_server_flags_still_work():
    out = subprocess.run([sys.executable, "-m", "lapps", "--check-config"], cwd=REPO, capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 0 and "config OK" in out.stdout


# ---------------------------------------------------------------------- servers of their own


def test_readyz_turns_503_when_a_stop_begins(lapps_server):
    admin = free_port()
    server = lapps_server(settings={"admin": {"port": admin},
                                    "server": {"shutdown_timeout": 5}, "limits": {"close_timeout": 5}})
    assert wait_for(lambda: get(admin, "/readyz")[0] == 200, 5)
    client = wsclient.connect(server.port)   # answers no close: the stop waits for it
    assert client.status == 101
    try:
        os.kill(server.pid, signal.SIGTERM)
        seen = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get(admin, "/readyz")), 2, 0.01)
        assert seen and seen[1] == "stopping\n", seen
        assert server.running()
        assert get(admin, "/healthz")[0] == 200   # the draining worker still heartbeats
        assert json.loads(get(admin, "/status")[1])["master"]["state"] == "stopping"
        assert client.recv_close()[0] == 1001
        client.send_close(1001)
    finally:
        client.close()
    server.proc.wait(10)
    assert server.proc.returncode == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)


def test_master_refusals_and_restarts(lapps_server):
    admin = free_port()
    server = lapps_server(settings={"admin": {"port": admin}, "server": {"max_connections": 1}})
    clients, _ = open_clients(server, 1)
    try:
        with wsclient.connect(server.port) as refused:
            assert refused.status == 503
        assert wait_total(admin, "lapps_handshakes_total", 1, worker="master", status="503") == 1
    finally:
        close_all(clients)
    assert total(admin, "lapps_worker_restarts_total") == 0
    (pid,) = server.worker_pids()
    os.kill(pid, signal.SIGKILL)
    assert wait_total(admin, "lapps_worker_restarts_total", 1, worker="1") == 1
    assert wait_for(lambda: get(admin, "/readyz")[0] == 200, 5)
    doc = json.loads(get(admin, "/status")[1])
    assert doc["workers"][0]["restarts"] == 1 and doc["workers"][0]["pid"] != pid
    assert psutil.pid_exists(doc["workers"][0]["pid"])


def test_admin_port_in_use_stops_the_start(lapps_server):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = lapps_server(settings={"admin": {"port": port}}, wait=False)
        assert server.proc.wait(10) == 1
    assert f"cannot listen on admin 127.0.0.1:{port}" in server.log()


# ---------------------------------------------------------------------- units


def test_slot_tables():
    block = SlotBlock(2)
    block.reset(1, 0, WorkerState.BOOTING)
    w = block.writer(1)
    w.services = {"echo": 0, "chat": 1}
    w.upgraded("echo")
    w.upgraded("echo")
    w.upgraded("chat")
    w.upgraded("unknown")                    # past the 16 counted services: only the 101
    w.ws_closed("chat", 1000, True)          # peer closed with 1000, we echoed it
    w.ws_closed("echo", 1001, False)         # we closed with 1001, the peer just left
    w.ws_closed("unknown", 4000, True)       # an application code
    w.ws_closed("unknown", 1006, False)      # dropped before any close frame
    w.handshake_failed(404)
    w.handshake_failed(405)                  # not in the table: "other"
    w.handshake_failed(None)                 # no answer: "aborted"
    w.messages_in = 7
    w.publish(5.0)
    t = block.read_tables(1)
    hs = dict(zip(HANDSHAKE_RESULTS, t.handshakes))
    assert hs == {**dict.fromkeys(HANDSHAKE_RESULTS, 0), "101": 4, "404": 1, "other": 1, "aborted": 1}
    sent = {c: n for c, n in zip(CLOSE_CODES, t.close_sent) if n}
    received = {c: n for c, n in zip(CLOSE_CODES, t.close_received) if n}
    assert sent == {"1000": 1, "1001": 1, "other": 1}
    assert received == {"1000": 1, "1006": 2, "other": 1}
    assert t.service_connections[:2] == (1, 0) and len(t.service_connections) == 16
    w.messages_in = 8
    w.publish(6.0)                           # core only: the tables stay as written
    assert block.read(1).messages_in == 8 and block.read(1).heartbeat == 6.0
    assert block.read_tables(1) == t
    assert block.read_tables(0).handshakes == (0,) * len(HANDSHAKE_RESULTS)   # the neighbour is untouched
    block.reset(1)
    assert block.read_tables(1).close_sent == (0,) * len(CLOSE_CODES)


def test_format_status():
    doc = {"master": {"pid": 10, "uptime_s": 3725.0, "state": "running", "ready": True, "rss_bytes": 2 << 20,
                      "cpu_percent": 1.25},
           "workers": [{"worker": 1, "pid": 11, "state": "running", "connections": 3, "messages_in_per_s": 2.0,
                        "messages_out_per_s": 4.5, "rss_bytes": 3 << 20, "cpu_percent": None, "restarts": 2},
                       {"worker": 2, "pid": 0, "state": "down", "connections": 0, "messages_in_per_s": 0.0,
                        "messages_out_per_s": 0.0, "rss_bytes": None, "cpu_percent": None, "restarts": 0}]}
    lines = format_status(doc).splitlines()
    assert lines[0] == "master pid 10, up 01:02:05, running (ready), RSS 2.0 MiB, CPU 1.2%"
    assert lines[2].split() == ["1", "11", "running", "3", "2.0", "4.5", "3.0", "MiB", "-", "2"]
    assert lines[3].split() == ["2", "-", "down", "0", "0.0", "0.0", "-", "-", "0"]

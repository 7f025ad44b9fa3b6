"""The fault barrier: an exception on one connection's path closes that connection, nothing else.

The hidden hook of workers/faults.py (LAPPS_FAULT_INJECT, read at worker start) makes the
connection that sends MARKER fail inside the parser, the host's handling of Lua's reply, or
the flush; 49 other connections on the same worker keep echoing, the worker keeps its pid,
and /metrics counts one internal error.
"""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, wait_for
from lapps.ws.constants import CloseCode, Opcode
from wsclient import connect
from workers.faults import FAULT_ENV, MARKER, SITES

CLIENTS = 50
VICTIM = 17
RAISED = {"parser": "InjectedFault", "lua_reply": "TypeError", "flush": "InjectedFault"}


def internal_errors(admin_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=3) as r:
        body = r.read().decode()
    return sum(s.value for family in text_string_to_metric_families(body) for s in family.samples
               if s.name == "lapps_internal_errors_total")


def echo_round(clients, tag: str) -> None:
    for i, c in enumerate(clients):
        c.send_frame(Opcode.TEXT, f"{tag} {i}".encode())
    for i, c in enumerate(clients):
        assert c.recv_message() == (Opcode.TEXT, f"{tag} {i}".encode())


@pytest.mark.parametrize("site", SITES)
def test_fault_on_one_of_fifty_connections_spares_the_other_49_and_the_worker(lapps_server, site):
    admin = free_port()
    server = lapps_server(settings={"admin": {"port": admin}}, env={FAULT_ENV: site})
    [pid] = server.worker_pids()
    clients = [connect(server.port) for _ in range(CLIENTS)]
    try:
        assert [c.status for c in clients] == [101] * CLIENTS
        echo_round(clients, "before")
        victim = clients[VICTIM]
        victim.send_frame(Opcode.BINARY, MARKER)
        frames = []
        while not frames or frames[-1].opcode != Opcode.CLOSE:
            frames.append(victim.recv_frame())
        if site == "flush":   # the echo was queued before the send failed: it goes out first
            assert (frames[0].opcode, frames[0].payload) == (Opcode.BINARY, MARKER)
        assert int.from_bytes(frames[-1].payload[:2], "big") == CloseCode.INTERNAL_ERROR
        victim.expect_tcp_close()
        others = clients[:VICTIM] + clients[VICTIM + 1:]
        echo_round(others, "after")
        assert server.worker_pids() == [pid]
        assert wait_for(lambda: internal_errors(admin) == 1, 5), internal_errors(admin)
        line = server.wait_log(r"internal error on a connection of service echo from 127\.0\.0\.1")[0]
        assert RAISED[site] in line
        log = server.log()
        assert "Traceback (most recent call last)" in log and "workers/worker.py" in log
        assert "respawning" not in log
        echo_round(others, "still")
    finally:
        for c in clients:
            c.close()


def test_fault_injection_is_off_unless_the_variable_is_set(lapps_server):
    """Without LAPPS_FAULT_INJECT the marker is a message like any other."""
    admin = free_port()
    server = lapps_server(settings={"admin": {"port": admin}})
    with connect(server.port) as c:
        c.send_frame(Opcode.BINARY, MARKER)
        assert c.recv_message() == (Opcode.BINARY, MARKER)
    assert internal_errors(admin) == 0


def test_the_same_fault_on_many_connections_logs_one_traceback_then_a_count(lapps_server):
    """The barrier's log is bounded too: per exception site, one traceback, then one count line."""
    server = lapps_server(settings={"server": {"log_repeat_interval": 1}}, env={FAULT_ENV: "parser"})
    [pid] = server.worker_pids()
    victims = [connect(server.port) for _ in range(12)]
    try:
        for c in victims:
            c.send_frame(Opcode.BINARY, MARKER)
            assert c.recv_close()[0] == CloseCode.INTERNAL_ERROR
        counted = server.wait_log(r"internal error on a connection .*\[11 more like this in 1s\]")
        assert len(counted) == 1
        assert server.log().count("Traceback (most recent call last)") == 1
        assert server.worker_pids() == [pid]
    finally:
        for c in victims:
            c.close()

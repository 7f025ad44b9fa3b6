"""Supervision and signals: dead and stuck workers are replaced, stops are clean (DESIGN §1)."""

from __future__ import annotations

import os
import signal
import time

import psutil

from conftest import open_clients, wait_for, worker_of_each
from wsclient import connect, echo_ok

SHUTDOWN_TIMEOUT = 3     # the fixture's [server] shutdown_timeout

SPIN_LUA = """\
local spin = {}
function spin.onStart() end
function spin.onShutdown() end
function spin.onDisconnect(handler) end
function spin.onMessage(handler, opcode, message)
  if message == "spin" then
    while true do end
  end
  ws:send(handler, opcode, message)
  return true
end
return spin
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def echoes(client, text: str) -> bool:
    client.send_text(text)
    return client.recv_message() == (1, text.encode())


def test_killed_worker_is_replaced_and_only_its_clients_lose_their_connection(lapps_server):
    server = lapps_server(workers=2)
    clients, owners = open_clients(server, 6)
    try:
        victim = owners[0]
        others = [c for c, o in zip(clients, owners) if o != victim]
        orphans = [c for c, o in zip(clients, owners) if o == victim]
        assert others, f"every connection landed on one worker: {owners}"
        os.kill(victim, signal.SIGKILL)
        for c in orphans:
            c.expect_tcp_close(timeout=5)
        for i, c in enumerate(others):
            assert echoes(c, f"survivor {i}")
        pids = wait_for(lambda: (lambda p: p if len(p) == 2 and victim not in p else None)(server.worker_pids()), 5)
        assert pids, f"no replacement worker within 5s: {server.worker_pids()}; log:\n{server.log()}"
        assert server.running()
        # a worker still loading its services is never picked: wait until the replacement serves
        server.wait_log(r"lapps\[worker \d+\] INFO serving", count=3, timeout=10)
        for i in range(4):
            assert echo_ok(server.port, f"new client {i}")
        # the replacement starts empty, so the balancer sends it the next connections
        (replacement,) = [p for p in pids if p not in owners]
        fresh = [connect(server.port) for _ in range(2)]
        clients.extend(fresh)
        fresh_owners = wait_for(lambda: (lambda o: o if None not in o else None)(worker_of_each(server, fresh)), 5)
        assert fresh_owners and replacement in fresh_owners, f"new connections went to {fresh_owners}"
        for i, c in enumerate(others):
            assert echoes(c, f"survivor again {i}")
    finally:
        for c in clients:
            c.close()


def test_sigterm_closes_every_client_with_1001_and_master_exits_0(lapps_server):
    server = lapps_server(workers=2)
    workers = server.worker_pids()
    clients = [connect(server.port) for _ in range(5)]
    try:
        assert [c.status for c in clients] == [101] * 5
        start = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        codes = []
        for c in clients:
            code, _reason = c.recv_close(timeout=SHUTDOWN_TIMEOUT + 3)
            codes.append(code)
            c.send_close(code)
        assert codes == [1001] * 5
        status = server.proc.wait(SHUTDOWN_TIMEOUT + 3)
        assert status == 0
        assert time.monotonic() - start <= SHUTDOWN_TIMEOUT + 3
        wait_for(lambda: not any(alive(p) for p in workers) and not server.group_pids(), 2)
        assert [p for p in workers if alive(p)] == []
        assert server.group_pids() == []
    finally:
        for c in clients:
            c.close()


def test_sigquit_stops_master_and_workers_at_once(lapps_server):
    server = lapps_server(workers=2)
    workers = server.worker_pids()
    client = connect(server.port)
    try:
        os.kill(server.pid, signal.SIGQUIT)
        server.proc.wait(3)
        wait_for(lambda: not any(alive(p) for p in workers), 2)
        assert [p for p in workers if alive(p)] == []
        assert server.group_pids() == []
    finally:
        client.close()


def test_workers_exit_by_themselves_when_master_is_killed(lapps_server):
    server = lapps_server(workers=2)
    workers = server.worker_pids()
    assert len(workers) == 2
    client = connect(server.port)
    try:
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(5)
        # PDEATHSIG / channel EOF: a graceful stop in every worker, so the client is told
        assert client.recv_close(timeout=SHUTDOWN_TIMEOUT + 3)[0] == 1001
        gone = wait_for(lambda: not any(alive(p) for p in workers), SHUTDOWN_TIMEOUT + 3)
        assert gone, f"workers still alive after the master died: {[p for p in workers if alive(p)]}"
    finally:
        client.close()


def test_stuck_worker_is_killed_and_replaced(lapps_server):
    # no instruction budget: the loop must really hang the worker, for the heartbeat to see it
    server = lapps_server({"spin": {"instruction_budget": 0}}, lua={"spin": SPIN_LUA}, workers=2,
                          settings={"workers": {"heartbeat_timeout": 2}})
    spinner = connect(server.port, "/spin")
    try:
        assert spinner.status == 101
        assert echoes(spinner, "not yet")
        stuck = wait_for(lambda: worker_of_each(server, [spinner])[0], 5)
        assert stuck, "no worker holds the spinning client's connection"
        spinner.send_text("spin")
        pids = wait_for(lambda: (lambda p: p if len(p) == 2 and stuck not in p else None)(server.worker_pids()), 10)
        assert pids, f"stuck worker {stuck} not replaced within 10s; log:\n{server.log()}"
        assert server.running()
        spinner.expect_tcp_close(timeout=3)
        assert "missed its heartbeat" in server.log()
        for i in range(3):
            assert echo_ok(server.port, f"after the stuck worker {i}")
    finally:
        spinner.close()

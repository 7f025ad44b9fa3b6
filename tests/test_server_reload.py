"""Reload (SIGHUP), SIGTTIN/SIGTTOU and SIGUSR1 on the real server (DESIGN §1 signals)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import toml

from conftest import wait_for
from lapps.client import ConnectionClosed, connect

VERSIONED = """
local versioned = {}
function versioned.onStart() end
function versioned.onMessage(h, op, m) ws:send(h, op, "%s:" .. m) return true end
function versioned.onDisconnect(h) end
function versioned.onShutdown() end
return versioned
"""


def url(server, path="/versioned"):
    return f"ws://127.0.0.1:{server.port}{path}"


def ask(server, text: str, path="/versioned") -> bytes:
    with connect(url(server, path), timeout=5) as c:
        c.send_text(text)
        return c.recv(timeout=5)[1]


def test_reload_swaps_the_lua_code_without_refusing_a_connection(lapps_server):
    server = lapps_server({"versioned": {}}, lua={"versioned": VERSIONED % "v1"}, workers=2,
                          settings={"server": {"drain_timeout": 2}})
    old_workers = set(server.worker_pids())
    assert ask(server, "a") == b"v1:a"
    kept = connect(url(server), timeout=5)      # open across the reload: drained, then 1001
    failures, successes, stop = [], [0], threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                ask(server, "x")
                successes[0] += 1
            except (OSError, ConnectionClosed, TimeoutError) as e:
                failures.append(repr(e))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.3)
        script = Path(server.config).parent / "services" / "versioned" / "versioned.lua"
        script.write_text(VERSIONED % "v2")
        os.kill(server.pid, signal.SIGHUP)
        server.wait_log("reload done", timeout=10)
        assert wait_for(lambda: ask(server, "b") == b"v2:b", 5)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join()
    print(f"\nreload: {successes[0]} connections during the reload, {len(failures)} failed")
    assert failures == [], f"{len(failures)} failed of {successes[0] + len(failures)}: {failures[:3]}"
    assert successes[0] > 10
    kept.send_text("old")
    assert kept.recv(timeout=5) == (1, b"v1:old")   # the old generation still serves it
    with pytest.raises(ConnectionClosed) as e:
        kept.recv(timeout=10)                       # until drain_timeout
    assert e.value.code == 1001
    new_workers = wait_for(lambda: (lambda p: p if len(p) == 2 and not p & old_workers else None)(
        set(server.worker_pids())), 10)
    assert new_workers, f"old workers still there: {server.worker_pids()} vs {old_workers}"


def test_a_bad_config_on_reload_is_logged_and_the_old_generation_serves(lapps_server):
    server = lapps_server({"versioned": {}}, lua={"versioned": VERSIONED % "v1"}, workers=1)
    workers = server.worker_pids()
    config = Path(server.config)
    tree = toml.loads(config.read_text())
    tree.setdefault("limits", {})["max_headers"] = -1
    config.write_text(toml.dumps(tree))
    os.kill(server.pid, signal.SIGHUP)
    server.wait_log("reload refused")
    assert "max_headers" in server.wait_log("reload refused")[0]
    assert ask(server, "still") == b"v1:still"
    assert server.worker_pids() == workers


def test_a_reload_whose_lua_does_not_compile_keeps_the_old_generation(lapps_server):
    server = lapps_server({"versioned": {}}, lua={"versioned": VERSIONED % "v1"}, workers=1)
    script = Path(server.config).parent / "services" / "versioned" / "versioned.lua"
    script.write_text("local broken = {\n")
    os.kill(server.pid, signal.SIGHUP)
    server.wait_log("reload failed", timeout=10)
    assert ask(server, "still") == b"v1:still"
    assert server.running()


def test_ttin_adds_a_worker_and_ttou_removes_one(lapps_server):
    server = lapps_server(workers=2)
    os.kill(server.pid, signal.SIGTTIN)
    assert wait_for(lambda: len(server.worker_pids()) == 3, 5), server.worker_pids()
    os.kill(server.pid, signal.SIGTTOU)
    assert wait_for(lambda: len(server.worker_pids()) == 2, 10), server.worker_pids()
    assert ask(server, "ok", "/echo") == b"ok"


def test_sigusr1_reopens_the_log_file(lapps_server, tmp_path):
    log = tmp_path / "lapps.log"
    server = lapps_server(workers=1, extra_args=["--log-file", str(log)], wait=False)
    assert wait_for(lambda: log.exists() and "serving" in log.read_text(), 10)
    rotated = tmp_path / "lapps.log.1"
    log.rename(rotated)
    os.kill(server.pid, signal.SIGUSR1)
    assert wait_for(lambda: log.exists() and "log files reopened" in log.read_text(), 5)
    os.kill(server.pid, signal.SIGTERM)
    server.proc.wait(timeout=10)
    assert "stopped" in log.read_text()


def test_broadcasts_reach_the_new_generation_after_a_reload(lapps_server):
    from test_server_lapps import TICKER, login
    server = lapps_server({"echo_lapps": {"protocol": "lapps", "preload": ["time", "murmur"]},
                           "ticker": {"standalone": True, "preload": ["nap"]}},
                          lua={"ticker": TICKER}, workers=2)
    os.kill(server.pid, signal.SIGHUP)
    server.wait_log("reload done", timeout=10)
    with connect(f"ws://127.0.0.1:{server.port}/echo_lapps") as c:
        c.request("subscribe", [login(c)])
        assert c.next_oon(5, timeout=5)


def test_access_log_has_a_line_per_upgrade_attempt(lapps_server):
    server = lapps_server(settings={"server": {"access_log": True}})
    assert ask(server, "x", "/echo") == b"x"
    with pytest.raises(Exception):
        connect(url(server, "/nowhere"), timeout=5)
    server.wait_log(r"access 127\.0\.0\.1 /echo 101 \d+\.\dms")
    server.wait_log(r"access 127\.0\.0\.1 /nowhere 404 \d+\.\dms")

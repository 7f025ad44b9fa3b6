"""Fixtures that run the real server: a subprocess on a free port, killed by pid at teardown.

`lapps_server(...)` (function scope) and `lapps_server_module(...)` (module scope, for a server
that a whole module can share because no test there breaks it) start
`python -m lapps --config <tmp>/lapps.toml --port N --workers W --listeners L` with:

- a config written into a temporary folder: `[server]` on 127.0.0.1 with `services_dir` pointing
  to a temporary services folder, short timeouts (handshake 2 s, close 1 s, shutdown 3 s), the
  admin port off, plus the services and settings the test asks for;
- the real `services/echo` copied there, plus the test's own Lua services (`lua={name: source}`);
- stdout and stderr in one log file (`server.log()` reads it so far).

Unless `wait=False`, the fixture returns once every worker said it is serving and an upgrade
to /echo succeeds (10 s at most). Teardown: SIGTERM, wait, SIGKILL the master by pid, and
SIGKILL its process group (it runs in its own session) so no worker outlives the test.
The process handling is the one harness of tests, bench and soak (`bench/harness.py`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
import toml

import wsclient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from harness import SHIPPED_SERVICES, LappsServer, ServerNotReady, free_port, services_folder  # noqa: E402

TEST_SETTINGS: dict[str, dict[str, Any]] = {
    "server": {"ip": "127.0.0.1", "shutdown_timeout": 3},
    "limits": {"handshake_timeout": 2, "close_timeout": 1},
    "admin": {"port": 0},
}
READY_TIMEOUT = 10.0


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` laid over a copy of `base`, table by table."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something true; that value, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def write_config(root: Path, services: dict[str, dict[str, Any]], lua: dict[str, str],
                 settings: dict[str, Any], port: int, copy: dict[str, Path] | None = None) -> Path:
    """The config file and the services folder under `root`; returns the config path.
    `copy` maps a service name to a folder copied as it is (e.g. one of the original's; a
    copied echo replaces ours); a shipped example service named in `services` comes along."""
    shipped = ["echo", *(name for name in services if (SHIPPED_SERVICES / name).is_dir())]
    services_dir = services_folder(root / "services", copy, lua, dict.fromkeys(shipped))
    tree = merge(TEST_SETTINGS, {"server": {"port": port, "services_dir": str(services_dir)}})
    tree = merge(tree, settings)
    tree["services"] = services
    path = root / "lapps.toml"
    path.write_text(toml.dumps(tree))
    return path


class Server(LappsServer):
    """A running (or exited) server process and what a test asks about it."""

    def wait_log(self, pattern: str, timeout: float = 5.0, count: int = 1) -> list[str]:
        """Wait until the log has `count` lines matching the regex `pattern`; those lines."""
        rx = re.compile(pattern)

        def matching() -> list[str] | None:
            lines = [line for line in self.log().splitlines() if rx.search(line)]
            return lines if len(lines) >= count else None

        found = wait_for(matching, timeout)
        assert found, f"no log line matching {pattern!r} within {timeout}s; log:\n{self.log()}"
        return found

    def worker_pids(self) -> list[int]:
        """Pids of the master's live IO workers (not its service processes), sorted."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "lapps: service" not in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                continue
        return sorted(pids)

    def group_pids(self) -> list[int]:
        """Every live process in the server's process group (master and children, even orphans)."""
        pids = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == self.pid and p.status() != psutil.STATUS_ZOMBIE:
                    pids.append(p.pid)
            except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
                continue
        return pids

    def wait_ready(self, timeout: float = READY_TIMEOUT, path: str | None = "/echo") -> float:
        """Every worker serving and an upgrade to /echo echoed; fails the test with the log otherwise."""
        try:
            return super().wait_ready(timeout, path)
        except ServerNotReady as e:
            pytest.fail(str(e))

    def stop(self, timeout: float = 6.0) -> dict[str, Any]:
        """SIGTERM, then SIGKILL by pid, then SIGKILL the whole process group."""
        return super().stop(timeout)


class ServerFactory:
    """Starts servers under `root`; `stop_all()` at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[Server] = []

    def __call__(self, services: dict[str, dict[str, Any]] | None = None, *, lua: dict[str, str] | None = None,
                 settings: dict[str, Any] | None = None, workers: int = 1, listeners: int = 1,
                 wait: bool = True, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None, copy: dict[str, Path] | None = None) -> Server:
        """Start a server. `services` are `[services.NAME]` tables (default: just echo; echo is
        always copied and is added when missing, since readiness is checked on /echo);
        `lua` maps a test service name to its source; `copy` a service name to a folder
        copied as it is; `settings` overlays other sections."""
        services = dict(services or {})
        services.setdefault("echo", {})
        port = free_port()
        folder = self.root / f"server{len(self.servers)}"
        config = write_config(folder, services, lua or {}, settings or {}, port, copy)
        server = Server.start(config, port, folder / "server.log", workers, listeners=listeners,
                              extra_args=extra_args or [], env={**os.environ, **(env or {})}, no_core=True)
        self.servers.append(server)
        if wait:
            server.wait_ready()
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def lapps_server(tmp_path: Path):
    """Factory of servers that live for one test."""
    factory = ServerFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def lapps_server_module(tmp_path_factory: pytest.TempPathFactory):
    """Factory of servers shared by the tests of one module (for tests that leave it healthy)."""
    factory = ServerFactory(tmp_path_factory.mktemp("lapps"))
    yield factory
    factory.stop_all()


def worker_of_each(server, clients) -> list[int | None]:
    """For each raw client, the pid of the worker that holds its socket (None: none found)."""
    local_ports = [c.sock.getsockname()[1] for c in clients]
    owner: dict[int, int] = {}
    for pid in server.worker_pids():
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port in local_ports and conn.laddr.port == server.port:
                owner[conn.raddr.port] = pid
    return [owner.get(port) for port in local_ports]


def held_connections(server) -> int:
    """Client connections the workers hold now."""
    return sum(1 for pid in server.worker_pids()
               for conn in psutil.Process(pid).net_connections(kind="tcp") if conn.raddr)


def open_clients(server, n: int):
    """`n` upgraded raw clients, opened one after the other, and the worker pid of each.
    Waits first until earlier connections (the readiness probe) are gone from every worker,
    so that the balancer starts from empty workers."""
    wait_for(lambda: held_connections(server) == 0, 5)
    clients = [wsclient.connect(server.port) for _ in range(n)]
    assert [c.status for c in clients] == [101] * n
    owners = wait_for(lambda: (lambda o: o if None not in o else None)(worker_of_each(server, clients)), 5)
    assert owners, f"some connections are held by no worker: {worker_of_each(server, clients)}"
    return clients, owners


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """`python -m lapps ARGS` to completion (for --check-config, --print-config, boot failures)."""
    return subprocess.run([sys.executable, "-m", "lapps", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          start_new_session=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failure, attach the log of every server the test used (what the server said is
    usually the diagnosis)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    servers: list[Server] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Server):
            servers.append(value)
        elif isinstance(value, ServerFactory):
            servers.extend(value.servers)
    for server in dict.fromkeys(servers):
        report.sections.append((f"server log (port {server.port})", server.log()[-6000:]))

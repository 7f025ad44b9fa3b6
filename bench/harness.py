"""The one harness that runs servers for the tests, the benchmarks and the soak, and the small
things every multi-process load generator on this machine needs.

`ServerProcess` is any server in a subprocess: its own session (process group), stdout and
stderr in one log file, teardown that sends SIGTERM, waits, then SIGKILLs the pid and the
whole group so no worker outlives it. `LappsServer` is `python -m lapps --config ... --port
... --workers ...` on top of it: ready once every worker logged its `serving` line and an
upgrade to /echo echoes (`echo_probe`). `services_folder` fills a services folder the way
every caller wants it (shipped services copied, test services written from Lua source).

Users: tests/conftest.py (the `lapps_server` fixtures), bench/bench_lapps.py,
bench/bench_setup.py, bench/run_peers.py, bench/bench_mqr.py, bench/ab_trees.py,
soak/soak.py and fuzz/live.py, each with bench/ on sys.path. Standard library and psutil
only: run_peers.py runs in the peers' own venv (bench/peers/requirements.txt), without the
project's packages.
"""

from __future__ import annotations

import base64
import ctypes
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.1"   # load scripts talk to loopback only
REPO = Path(__file__).resolve().parent.parent
SHIPPED_SERVICES = REPO / "services"
SERVING = re.compile(r"lapps\[(worker \d+)\] INFO serving")   # a worker's ready line


def log(msg: str) -> None:
    """Progress for a person watching: printed at once, whatever the buffering."""
    print(msg, flush=True)


def save_results(path: Path, results: Any) -> None:
    """Write `results` as JSON to `path` (bench/results/ by default) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"\nresults: {path}")


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); the new limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass   # not allowed here: go on with what we have
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(sorted_values: Any, q: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when there are none)."""
    n = len(sorted_values)
    if not n:
        return float("nan")
    return sorted_values[min(n - 1, max(0, math.ceil(q * n) - 1))]


def tree_cpu(procs: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds of these processes so far (one that is gone counts 0)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def quick_defaults(args: Any, **defaults: tuple[Any, Any]) -> None:
    """Each option of `args` (argparse) left unset (None) gets its default, given as
    (full run, `--quick` run) by option name."""
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def git_commit(tree: Path = REPO) -> str | None:
    """The short commit of `tree`'s HEAD, for the results (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder for configs and server logs: removed when the block succeeds,
    kept (and its path printed) when it raises, since the logs are then the diagnosis."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    except BaseException:
        print(f"server logs kept in {root}", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)


def reap(children: Sequence[Any], timeout: float = 10.0) -> list[Any]:
    """Join client processes (multiprocessing), killing those still running after
    `timeout` seconds each; the ones that had to be killed."""
    killed = []
    for p in children:
        p.join(timeout)
        if p.is_alive():
            killed.append(p)
            p.kill()
            p.join()
    return killed


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a server started by a load script, before exec: SIGTERM it if the script dies
    (kill -9 included), so that no server outlives its run."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# ---------------------------------------------------------------------------- servers


class ServerNotReady(RuntimeError):
    """The server exited while starting, or was not ready in time; the message has its log."""


def echo_probe(port: int, path: str = "/echo", timeout: float = 2.0) -> bool:
    """An upgrade to `path`, one masked text frame and a close: True when the text comes back.
    Its own few lines of framing, so that it runs where the project's packages do not (the
    peers' venv) and against any server (the peers)."""
    with socket.create_connection((HOST, port), timeout) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return False
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            return False
        payload, mask_key = b"ready?", os.urandom(4)
        masked = bytes(b ^ mask_key[i % 4] for i, b in enumerate(payload))
        s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask_key + masked)
        want = bytes([0x81, len(payload)]) + payload
        while len(rest) < len(want):
            chunk = s.recv(4096)
            if not chunk:
                return False
            rest += chunk
        close = bytes(b ^ mask_key[i % 4] for i, b in enumerate((1000).to_bytes(2, "big")))
        try:
            s.sendall(bytes([0x88, 0x82]) + mask_key + close)
        except OSError:
            pass   # the echo is what counts; a server that already dropped us is ready too
        return rest[:len(want)] == want


def serving_workers(log_text: str) -> int:
    """How many distinct workers logged their ready line (a respawned one counts once)."""
    return len(set(SERVING.findall(log_text)))


def warning_lines(log_text: str) -> list[str]:
    """A LAppS log's WARNING, ERROR and CRITICAL lines and the first lines of tracebacks
    (what a benchmark reports; its INFO lines are normal)."""
    return [line for line in log_text.splitlines()
            if any(w in line for w in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback"))]


def services_folder(folder: Path, copy: Mapping[str, Path] | None = None, lua: Mapping[str, str] | None = None,
                    shipped: Sequence[str] = ("echo",)) -> Path:
    """Create `folder` with the services a server runs: each name in `shipped` copied from
    services/ (a name also in `copy` or `lua` is left to those), each `copy` folder copied as
    it is (NAME -> folder), each `lua` source written as NAME/NAME.lua. `folder`."""
    copy = dict(copy or {})
    lua = dict(lua or {})
    folder.mkdir(parents=True)
    for name in shipped:
        if name not in copy and name not in lua:
            shutil.copytree(SHIPPED_SERVICES / name, folder / name)
    for name, source in copy.items():
        shutil.copytree(source, folder / name)
    for name, text in lua.items():
        (folder / name).mkdir()
        (folder / name / f"{name}.lua").write_text(text)
    return folder


def lapps_argv(config: Path, port: int | None = None, workers: int | None = None, listeners: int | None = None,
               python: str | Path = sys.executable, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of `python -m lapps` with a config file and the usual overrides."""
    argv = [str(python), "-m", "lapps", "--config", str(config)]
    for flag, value in (("--port", port), ("--workers", workers), ("--listeners", listeners)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + list(extra_args)


def spawn(argv: Sequence[str], log_path: Path, *, cwd: Path = REPO, env: Mapping[str, str] | None = None,
          tied: bool = False, no_core: bool = False) -> subprocess.Popen:
    """Start `argv` in its own session (so its whole process group can be killed), stdout
    and stderr into `log_path`. `env` replaces the environment when given. `tied`: the server
    gets SIGTERM if this process dies (kill -9 included), for load scripts that must leave
    nothing behind. `no_core`: a worker killed with SIGABRT (stuck heartbeat) drops no core
    file in the repo."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(env) if env is not None else None,
                                preexec_fn=die_with_parent if tied else None)
    if no_core:
        resource.prlimit(proc.pid, resource.RLIMIT_CORE, (0, 0))
    return proc


class ServerProcess:
    """A server process started by `spawn` (or by hand, the same way): what its log says,
    readiness, its process tree, and teardown by pid and process group."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path

    def log(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The server's process and all its descendants now (empty once it is gone)."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def wait_until(self, probe: Callable[[], bool] | None, timeout: float = 30.0,
                   ready: Callable[[], bool] | None = None, interval: float = 0.05) -> float:
        """Until `ready()` (a log condition) holds and then `probe()` succeeds; the seconds it
        took. ServerNotReady, with the log, when the server exits first or time runs out."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.running():
                raise ServerNotReady(f"server exited with {self.proc.returncode} while starting; "
                                     f"log:\n{self.log()[-6000:]}")
            if ready is None or ready():
                try:
                    if probe is None or probe():
                        return time.monotonic() - start
                except (OSError, EOFError):
                    pass   # not accepting yet, or a worker still starting
            time.sleep(interval)
        raise ServerNotReady(f"server not ready after {timeout:g} s; log:\n{self.log()[-6000:]}")

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """SIGTERM, wait `timeout`, SIGKILL by pid; then SIGKILL the process group (what
        outlived the master). How it went: seconds, whether SIGKILL was needed, exit code."""
        start = time.monotonic()
        killed = False
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                self.proc.wait(5)
        stop_s = time.monotonic() - start
        left = self.group_left()
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass   # the group is empty: nothing outlived the master
        return {"stop_s": round(stop_s, 2), "sigkill": killed, "exit_code": self.proc.returncode,
                "outlived_master": left}

    def group_left(self) -> list[int]:
        """Live processes of the server's process group other than the master (after it
        exited: what outlived it). Cheap when the group is empty, the usual case."""
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        left = []
        for p in psutil.process_iter(["pid"]):
            try:
                if p.pid != self.pid and os.getpgid(p.pid) == self.pid and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        return left


class LappsServer(ServerProcess):
    """`python -m lapps` with the config file `config` on `port`; `workers` is how many
    ready lines `wait_ready` waits for. `start` builds the command line and spawns it."""

    def __init__(self, proc: subprocess.Popen, port: int, config: Path, log_path: Path, workers: int = 1) -> None:
        super().__init__(proc, log_path)
        self.port = port
        self.config = config
        self.workers = workers

    @classmethod
    def start(cls, config: Path, port: int, log_path: Path, workers: int = 1, *, listeners: int | None = None,
              python: str | Path = sys.executable, prefix: Sequence[str] = (), extra_args: Sequence[str] = (),
              **spawn_options: Any) -> "LappsServer":
        """Spawn `[*prefix, python, -m, lapps, --config, ...]` (see `lapps_argv`, `spawn`)."""
        argv = [*prefix, *lapps_argv(config, port, workers, listeners, python, extra_args)]
        return cls(spawn(argv, log_path, **spawn_options), port, config, log_path, workers)

    def wait_ready(self, timeout: float = 30.0, path: str | None = "/echo") -> float:
        """Every worker logged `serving` and (unless `path` is None) an upgrade to `path`
        echoes; the seconds it took, or ServerNotReady."""
        probe = None if path is None else (lambda: echo_probe(self.port, path))
        return self.wait_until(probe, timeout, ready=lambda: serving_workers(self.log()) >= self.workers)

    def log_problems(self) -> list[str]:
        """The log's WARNING, ERROR and CRITICAL lines and tracebacks."""
        return warning_lines(self.log())

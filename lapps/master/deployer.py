"""Hot deploy in the master: service archives dropped into `[server] deploy_dir`.

Each pass of the master's loop calls `tick()`. An archive that has not changed between two
looks (so a copy still being written is left alone) is deployed, one at a time:

1. checked and unpacked beside `services_dir`, its descriptor turned into service.toml
   (lapps/deploy.py); its Lua files compiled in a child process (`python -m lapps.lua.check`:
   the master runs no Lua);
2. swapped in for the service's folder, and the configuration read again (a config that no
   longer loads puts the old folder back);
3. applied: a standalone service's instances are restarted with the new code; for a
   reactive one every IO worker is told to serve the new version (workers/host.py
   `redeploy`: new connections get it, open ones keep the old instance until they end)
   and reports back. If one cannot start it, the old folder and configuration come back
   and the workers are told again, so they all serve the old version.

Then the archive is removed (deployed) or renamed to NAME.rejected beside a NAME.rejected.txt
that says why, and one log line says what happened. Connections of every other service are
not touched.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, ConfigError
from ..deploy import DeployError, Installed, commit, discard, install, is_archive, rollback, unpack

CHECK_TIMEOUT = 30.0     # seconds the compile check may take
REPORT_TIMEOUT = 30.0    # seconds the workers have to start the new version and say so


@dataclass
class DeployHooks:
    """What the deployer needs of the arbiter."""
    config: Callable[[], Config]                          # the running configuration
    reload_config: Callable[[], Config]                   # read it again (raises ConfigError)
    apply: Callable[[Config, str], None]                  # run with this config; restart NAME if standalone
    workers: Callable[[], list[tuple[int, int]]]          # (index, pid) of the workers serving now
    tell: Callable[[int, str], bool]                      # tell worker INDEX that NAME was deployed


@dataclass
class _Pending:
    """A reactive deploy waiting for the workers' reports."""
    archive: Path
    name: str
    done: Installed
    previous: Config
    deadline: float
    waiting: dict[int, int]                               # worker index -> its pid
    errors: list[str] = field(default_factory=list)
    reverting: bool = False


class Deployer:
    """Watches one deploy folder; see the module docstring."""

    def __init__(self, folder: str, hooks: DeployHooks, check: Callable[[Path], str | None] | None = None) -> None:
        self.folder = Path(folder)
        self.hooks = hooks
        self.check = check or compile_check
        self.log = logging.getLogger("lapps.deploy")
        self.seen: dict[Path, tuple[int, int]] = {}       # archive -> (size, mtime) at the last look
        self.pending: _Pending | None = None
        self.next_look = 0.0

    def tick(self, now: float) -> None:
        if self.pending is not None:
            return self._check_reports(now)
        if now < self.next_look:
            return
        self.next_look = now + 1.0
        for archive in self._stable_archives():
            self._deploy(archive, now)
            if self.pending is not None:
                return

    def _stable_archives(self) -> list[Path]:
        try:
            entries = sorted(p for p in self.folder.iterdir() if is_archive(p.name) and p.is_file())
        except OSError as e:
            self.log.error("deploy: cannot read %s: %s", self.folder, e)
            return []
        stable, seen = [], {}
        for path in entries:
            try:
                st = path.stat()
            except OSError:
                continue
            seen[path] = (st.st_size, st.st_mtime_ns)
            if self.seen.get(path) == seen[path]:
                stable.append(path)
        self.seen = seen
        return stable

    def _deploy(self, archive: Path, now: float) -> None:
        config = self.hooks.config()
        services_dir = Path(config.server.services_dir)
        try:
            staged = unpack(archive, services_dir, set(config.services))
        except DeployError as e:
            return self._refuse(archive, str(e))
        for warning in staged.warnings:
            self.log.warning("deploy: %s: %s", archive.name, warning)
        problem = self.check(staged.folder)
        if problem:
            discard(staged)
            return self._refuse(archive, problem)
        done = install(staged, services_dir)
        try:
            new = self.hooks.reload_config()
        except ConfigError as e:
            rollback(done)
            return self._refuse(archive, f"the configuration with it does not load: {e}")
        name = staged.name
        svc = new.services.get(name)
        self.hooks.apply(new, name)
        if svc is not None and svc.standalone:
            commit(done)
            return self._deployed(archive, name, f"standalone, {svc.instances} instance(s) restarted")
        waiting = {}
        for index, pid in self.hooks.workers():
            if self.hooks.tell(index, name):
                waiting[index] = pid
        self.pending = _Pending(archive, name, done, config, now + REPORT_TIMEOUT, waiting)
        self._check_reports(now)

    def report(self, index: int, name: str, error: str | None) -> None:
        """Worker `index` said how the deploy of `name` went there."""
        p = self.pending
        if p is None or name != p.name or index not in p.waiting:
            return
        del p.waiting[index]
        if error and not p.reverting:
            p.errors.append(f"worker {index}: {error}")

    def _check_reports(self, now: float) -> None:
        p = self.pending
        assert p is not None
        alive = dict(self.hooks.workers())
        for index, pid in list(p.waiting.items()):
            if alive.get(index) != pid:     # gone: its successor forks with the current config
                del p.waiting[index]
        if p.waiting and now < p.deadline:
            return
        if p.waiting and not p.reverting:
            p.errors.append(f"worker(s) {', '.join(map(str, sorted(p.waiting)))} did not answer "
                            f"within {REPORT_TIMEOUT:g} s")
        if p.reverting:
            self.pending = None
            return self._refuse(p.archive, "; ".join(p.errors))
        if not p.errors:
            self.pending = None
            commit(p.done)
            return self._deployed(p.archive, p.name, f"reactive, on {len(alive)} worker(s)")
        # put the old version back everywhere, then refuse
        rollback(p.done)
        self.hooks.apply(p.previous, p.name)
        p.reverting = True
        p.deadline = now + REPORT_TIMEOUT
        p.waiting = {i: pid for i, pid in self.hooks.workers() if self.hooks.tell(i, p.name)}

    def _deployed(self, archive: Path, name: str, how: str) -> None:
        self.log.info("deploy: service %s deployed from %s (%s)", name, archive.name, how)
        try:
            archive.unlink()
        except OSError as e:
            self.log.error("deploy: cannot remove %s: %s", archive, e)

    def _refuse(self, archive: Path, why: str) -> None:
        self.log.error("deploy: %s refused, nothing changed: %s", archive.name, why)
        rejected = archive.with_name(archive.name + ".rejected")
        try:
            os.replace(archive, rejected)
            rejected.with_name(rejected.name + ".txt").write_text(why + "\n", encoding="utf-8")
        except OSError as e:
            self.log.error("deploy: cannot set %s aside: %s", archive, e)


def compile_check(folder: Path) -> str | None:
    """Why the Lua files of `folder` do not compile (None: they do), from a child process."""
    try:
        result = subprocess.run([sys.executable, "-m", "lapps.lua.check", str(folder)],
                                capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"the Lua compile check took longer than {CHECK_TIMEOUT:g} s"
    if result.returncode == 0:
        return None
    return (result.stdout.strip() or result.stderr.strip() or f"compile check failed ({result.returncode})")

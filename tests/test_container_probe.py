"""packaging/container/probe.py, the image's HEALTHCHECK, against a real server: it finds the
admin endpoint through $LAPPS_CONFIG as the image runs it (`python -I`), exits 0 on a 200,
and 1 with the reason when the endpoint is down or off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import toml

from conftest import REPO, free_port

PROBE = REPO / "packaging" / "container" / "probe.py"


def probe(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAPPS_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-I", str(PROBE), *args], env=env, capture_output=True,
                          text=True, timeout=30, cwd="/")


def test_probe_is_healthy_and_ready_on_a_serving_server(lapps_server) -> None:
    admin = free_port()
    server = lapps_server(settings={"admin": {"ip": "127.0.0.1", "port": admin}})
    server.wait_log(rf"admin endpoint on http://127\.0\.0\.1:{admin}")
    healthz = probe(server.config)
    assert (healthz.returncode, healthz.stdout) == (0, "/healthz: ok\n"), healthz.stderr
    readyz = probe(server.config, "/readyz")
    assert (readyz.returncode, readyz.stdout) == (0, "/readyz: ready\n"), readyz.stderr


def test_probe_fails_with_the_reason_when_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "lapps.toml"
    config.write_text(toml.dumps({"admin": {"ip": "0.0.0.0", "port": port}}))
    out = probe(config)
    assert out.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz" in out.stderr   # 0.0.0.0 is asked on the loopback
    assert "refused" in out.stderr.lower(), out.stderr


def test_probe_fails_when_the_admin_endpoint_is_off(tmp_path: Path) -> None:
    config = tmp_path / "lapps.toml"
    config.write_text(toml.dumps({"admin": {"port": 0}}))
    out = probe(config, "/readyz")
    assert out.returncode == 1 and "the admin endpoint is off" in out.stderr, out.stderr

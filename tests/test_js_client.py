"""clients/js/lapps.js under Node's own test runner, against the real server.

The node tests (clients/js/test/lapps.test.mjs) start and restart `python -m lapps` themselves
(with this Python), since the reconnect test kills the server under a live client. This test
runs them and fails when one fails, with node's report in the message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

JS = REPO / "clients" / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="no node (make node-deps installs it)"),
    pytest.mark.skipif(not (JS / "node_modules" / "cbor-x").is_dir(), reason="cbor-x not installed (make js)"),
]


def test_lapps_js_node_tests_pass_against_the_real_server():
    proc = subprocess.run(
        [NODE, "--experimental-websocket", "--no-warnings", "--test", "--test-reporter=spec",
         "test/lapps.test.mjs"],
        cwd=JS, capture_output=True, text=True, timeout=240,
        env={**os.environ, "LAPPS_PYTHON": sys.executable}, start_new_session=True)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"node --test failed ({proc.returncode}):\n{report[-8000:]}"
    assert "# fail 0" in report or "fail 0" in report, report[-4000:]

"""The original LAppS browser client (examples/echo_lapps_client: client.html with its own
cbor.js), unchanged, in a real headless Chromium against the original's echo_lapps,
time_broadcast and broadcast_blob on the real server over wss://.

The page is opened from its file. Two things of its world are stood in for, neither of them
ours: the webix UI library it loads from a CDN (this machine has no internet; a few lines
record what the page asks webix to show), and the address it hard-wires,
wss://localhost:5083, which Chromium's host resolver maps to the test server's port. The
server's certificate is the development one from `make certs`, which the browser is told
to accept.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

import conftest
from conftest import REPO, free_port

ORIGINAL = REPO.parent / "shared" / "original-lapps" / "examples"
CHROMIUM = shutil.which("chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make test installs it)")

pytestmark = [
    pytest.mark.skipif(not ORIGINAL.is_dir(), reason=f"the original LAppS files are not here ({ORIGINAL})"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)"),
]

# What the page calls of webix: ui() for its chart, $$("barChart").add/remove/getFirstId, and
# message() for each server-time OON. Recorded in window.shown for the test to read.
WEBIX = """
window.shown = {bars: [], messages: []};
window.webix = {
  ui: function (config) { window.shown.chart = config.id; },
  message: function (m) { window.shown.messages.push(m.text); },
};
window.$$ = function (id) {
  return {
    add: function (bar) { window.shown.bars.push(bar); },
    remove: function () {},
    getFirstId: function () { return 1; },
  };
};
"""


@pytest.fixture(params=["original services", "shipped services"])
def server(request, lapps_server, tmp_path, monkeypatch):
    """The original's echo_lapps, time_broadcast and broadcast_blob; or ours (services/), whose
    echo_lapps speaks the original's flow, so the original's page works against `make run`."""
    certs = tmp_path / "certs"
    subprocess.run(["make", "-s", "certs", f"CERTS={certs}"], cwd=REPO, check=True, capture_output=True)
    port = free_port()
    monkeypatch.setattr(conftest, "free_port", lambda: port)
    original = request.param == "original services"
    names = ("echo_lapps", "time_broadcast", "broadcast_blob") if original else ()
    services = {"echo_lapps": {"protocol": "LAppS", "preload": ["time", "murmur", "mqr"]},
                "time_broadcast": {"standalone": True, "preload": ["nap", "time"]}}
    if original:
        services["broadcast_blob"] = {"standalone": True, "preload": ["nap"]}
    srv = lapps_server(
        services,
        copy={name: ORIGINAL / name for name in names},
        settings={"server": {"tls": {"enabled": True, "cert": str(certs / "localhost.crt"),
                                     "key": str(certs / "localhost.key")}}},
        wait=False)
    srv.wait_log("serving", count=1)
    srv.blobs = original     # only the original's broadcast_blob sends on cid 6
    return srv


def test_original_browser_client_logs_in_echoes_and_gets_both_broadcasts(server):
    page_file = ORIGINAL / "echo_lapps_client" / "client.html"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[f"--host-resolver-rules=MAP localhost 127.0.0.1:{server.port}"])
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.route("http://cdn.webix.com/**", lambda route: route.fulfill(
                status=200, body=WEBIX if route.request.url.endswith(".js") else "",
                content_type="text/javascript" if route.request.url.endswith(".js") else "text/css"))
            page.goto(page_file.as_uri())
            # time_broadcast sends every second (the page adds a chart bar each time) and
            # broadcast_blob every 5 s
            page.wait_for_function("window.shown && window.shown.bars.length >= 3", timeout=15_000)
            if server.blobs and not any(c.startswith("OON. Received a blob") for c in console):
                page.wait_for_event("console", predicate=lambda m: m.text.startswith("OON. Received a blob"),
                                    timeout=8_000)
            shown = page.evaluate("window.shown")
            roundtrips = [bar["rps"] for bar in shown["bars"]]
        finally:
            browser.close()
    assert "is open" in console and "echo has been encoded and sent" in console
    assert "subscribed" in console
    assert not server.blobs or any(c.startswith("OON. Received a blob") for c in console), console
    assert not [c for c in console if c.startswith("ERROR") or c == "is closed"], console
    assert len(shown["messages"]) >= 3        # one webix message per server-time OON
    if server.blobs:                          # the original's time_broadcast says it in words
        assert all(m.startswith("Server time: ") for m in shown["messages"]), shown["messages"]
    assert max(roundtrips[1:]) > 10, roundtrips     # the echo loop runs: round trips every second
    assert "Not authenticated" not in server.log()

"""The demo page in a real browser: Playwright driving Debian's chromium (`make test` installs
both). The page is served by LAppS itself (static_dir = clients/demo); it must log in by
itself, run the echo loop (rate above 0 after 3 s), receive the server time on cid 5, come back
by itself after the server restarts, log in as another user, unsubscribe and subscribe, and
log out. A screenshot goes to reports/demo.png and the
figures to reports/demo_browser.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import REPO, wait_for

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extras (make venv)")
CHROMIUM = "/usr/bin/chromium"
DEMO = REPO / "clients" / "demo"
REPORTS = REPO / "reports"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no Debian chromium (make browser-deps installs it)"),
    pytest.mark.skipif(not (DEMO / "vendor" / "lapps.js").exists(), reason="clients/demo/vendor not built (make js)"),
]

SERVICES = {"echo_lapps": {"protocol": "lapps", "preload": ["time", "murmur"]},
            "time_broadcast": {"standalone": True, "preload": ["nap", "time"]}}
SETTINGS = {"server": {"static_dir": str(DEMO)}}


def start_demo(lapps_server, port: int | None = None):
    """The demo's services with the page folder served; on `port` when given (a restart)."""
    if port is None:
        return lapps_server(SERVICES, settings=SETTINGS, workers=2)
    server = lapps_server(SERVICES, settings=SETTINGS, workers=2, wait=False, extra_args=["--port", str(port)])
    server.port = port   # the command line's last --port wins
    server.wait_ready()
    return server


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, predicate, timeout: float, what: str) -> str:
    value = wait_for(lambda: (lambda t: t if predicate(t) else None)(text(page, selector)), timeout)
    assert value, f"{what}: {selector} is {text(page, selector)!r} after {timeout}s"
    return value


def test_demo_page_logs_in_echoes_ticks_and_survives_a_restart(lapps_server):
    server = start_demo(lapps_server)
    origin = f"http://127.0.0.1:{server.port}"
    REPORTS.mkdir(exist_ok=True)
    figures: dict[str, float] = {}
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(origin + "/")

            wait_text(page, "#state", lambda t: t == "open", 10, "connection")
            wait_text(page, "#user", lambda t: t == "admin", 10, "automatic login")
            time.sleep(3)
            rate = int(text(page, "#rate"))
            assert rate > 0, "no echo round trips after 3 s"
            figures["echo_rate_per_s"] = rate
            ticks = int(wait_text(page, "#ticks", lambda t: int(t) >= 2, 5, "server time ticks"))

            # restart: SIGTERM (the page sees 1001), then a new server on the same port
            port = server.port
            server.stop()
            wait_text(page, "#state", lambda t: t == "reconnecting", 10, "the drop")
            server = start_demo(lapps_server, port)
            ready = time.monotonic()
            wait_text(page, "#state", lambda t: t == "open", 15, "reconnect")
            figures["reconnect_s"] = round(time.monotonic() - ready, 2)
            wait_text(page, "#user", lambda t: t == "admin", 10, "login after the reconnect")
            assert text(page, "#reconnects") == "1"
            wait_text(page, "#ticks", lambda t: int(t) > ticks, 5, "ticks after the reconnect")
            time.sleep(2)
            after = int(text(page, "#rate"))
            assert after > 0, "the echo loop did not resume"
            figures["echo_rate_after_restart_per_s"] = after

            # log in as another user from the form
            page.fill("input[name=user]", "guest")
            page.fill("input[name=password]", "guest")
            page.click("#login button[type=submit]")
            wait_text(page, "#user", lambda t: t == "guest", 5, "login as guest")
            time.sleep(1.2)
            page.screenshot(path=str(REPORTS / "demo.png"), full_page=True)

            # unsubscribe: the ticks stop (one already on its way may land); subscribe: they resume
            page.click("#subscribe")
            wait_text(page, "#subscribe", lambda t: t == "Subscribe", 5, "unsubscribed")
            time.sleep(0.3)
            stopped = int(text(page, "#ticks"))
            time.sleep(2.5)
            assert int(text(page, "#ticks")) <= stopped + 1, "ticks went on after unsubscribe"
            page.click("#subscribe")
            wait_text(page, "#subscribe", lambda t: t == "Unsubscribe", 5, "subscribed again")
            wait_text(page, "#ticks", lambda t: int(t) > stopped + 1, 5, "ticks after subscribing again")

            # logout: nobody is logged in and the echo loop stops
            page.click("#logout")
            wait_text(page, "#user", lambda t: t == "nobody", 5, "logout")
            time.sleep(2.2)
            assert text(page, "#rate") == "0", "echoes after logout"

            outside = [u for u in requests if not u.startswith((origin + "/", f"ws://127.0.0.1:{port}/"))]
            assert not outside, f"the page loaded from elsewhere: {outside}"
            assert not errors, f"errors in the page: {errors}"
        finally:
            browser.close()
    (REPORTS / "demo_browser.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"demo page figures: {figures}")

"""Which services start, in what order: auto_start and depends, for reactive and standalone
services alike (lapps/startup.py), then on the real server."""

from __future__ import annotations

from pathlib import Path

from lapps.config import load_config
from lapps.startup import reactive_order, standalone_order, start_order
from wsclient import connect

SERVICES = {
    # name: (standalone, auto_start, depends)
    "front": (False, True, ["store", "ticker"]),
    "store": (False, False, []),
    "ticker": (True, False, ["feed"]),
    "feed": (True, True, []),
    "idle": (False, False, []),
    "cron": (True, False, []),
}


def test_start_order_starts_auto_start_services_and_what_they_depend_on(tmp_path: Path):
    lines = ["[server]", f"services_dir = '{tmp_path}'"]
    for name, (standalone, auto, deps) in SERVICES.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.lua").write_text("return {}\n")
        lines += [f"[services.{name}]", f"standalone = {str(standalone).lower()}",
                  f"auto_start = {str(auto).lower()}", f"depends = {deps!r}"]
    (tmp_path / "lapps.toml").write_text("\n".join(lines) + "\n")
    config = load_config(str(tmp_path / "lapps.toml"))
    order = start_order(config)
    assert order == ["store", "feed", "ticker", "front"]    # idle and cron: nothing starts them
    assert reactive_order(config) == ["store", "front"]
    assert standalone_order(config) == ["feed", "ticker"]


ANNOUNCER = """
local s = {}
function s.onStart() print("onStart %s") end
function s.onShutdown() end
function s.onDisconnect(h) end
function s.onMessage(h, op, m) ws:send(h, op, "%s: " .. m) return true end
return s
"""


def test_a_reactive_service_nothing_starts_is_not_served(lapps_server):
    server = lapps_server(
        {"front": {"depends": ["store"]}, "store": {"auto_start": False}, "idle": {"auto_start": False}},
        lua={name: ANNOUNCER % (name, name) for name in ("front", "store", "idle")})
    for target, expected in (("/front", "front: hi"), ("/store", "store: hi")):
        with connect(server.port, target) as c:
            assert c.status == 101
            c.send_text("hi")
            assert c.recv_frame(timeout=5).payload.decode() == expected
    with connect(server.port, "/idle") as c:
        assert c.status == 404
    log = server.log()
    assert log.index("onStart store") < log.index("onStart front")
    assert "onStart idle" not in log

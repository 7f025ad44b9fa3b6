"""`lapps migrate-config`: the original LAppS's ws.json + lapps.json (+ descriptors) as TOML.

The converter (lapps/migrate.py) from dicts alone; the command over files written here, with
`check-config` run on what it wrote; and, where ../shared/original-lapps exists, the
original's own configs and services.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import wsclient
from conftest import REPO, Server, free_port, run_cli
from lapps.migrate import AUTO_FRAGMENT_SIZE, MigrationError, migrate

ORIGINAL = REPO.parent / "shared" / "original-lapps"
NOOP_REACTIVE = """local s = {}
function s.onStart() end
function s.onShutdown() end
function s.onDisconnect(h) end
function s.onMessage(h, op, m) return true end
return s
"""
NOOP_STANDALONE = """local s = {}
function s.init() end
function s.run() while not must_stop() do end end
return s
"""
WS = {
    "listeners": 3, "connection_weight": 2.0, "ip": "127.0.0.1", "port": 6083,
    "lapps_config_auto_save": True,
    "workers": {"workers": 2, "max_connections": 5000, "auto_fragment": True, "max_poll_events": 100,
                "max_poll_wait_ms": 10, "max_inbounds_skip": 50, "input_buffer_size": 4096},
    "acl": {"policy": "deny", "exclude": ["127.0.0.1"]},
    "tls": True, "tls_server_version": 3, "tls_client_version": 3,
    "tls_certificates": {"ca": "/nowhere/ca.crt", "cert": "/nowhere/s.crt", "key": "/nowhere/s.key"},
}
LAPPS = {
    "directories": {"applications": "apps", "app_conf_dir": "etc", "tmp": "tmp", "workdir": "w", "deploy": "d"},
    "services": {
        "chat": {"standalone": False, "protocol": "LAppS", "request_target": "/chat", "instances": 2,
                 "max_inbound_message_size": 1024, "proto_alias": "chat.v1",
                 "preload": ["time", "pam_auth", "nap", "bcast"], "depends": ["ticker", "gone"],
                 "acl": {"policy": "allow", "exclude": []}},
        "ticker": {"internal": True, "instances": 1, "preload": None},
        "missing": {"standalone": True, "instances": 1},
    },
}


def toml_of(text: str) -> dict:
    return tomllib.loads(text)


def test_migrate_maps_every_server_key_and_notes_what_it_drops():
    result = migrate(WS, LAPPS, services_dir="/srv/apps", scripts={"chat", "ticker"},
                     present_files={"/nowhere/s.crt", "/nowhere/s.key"})
    t = toml_of(result.text)
    assert t["server"] == {"ip": "127.0.0.1", "port": 6083, "listeners": 3, "workers": 2,
                           "max_connections": 5000, "services_dir": "/srv/apps",
                           "tls": {"enabled": True, "cert": "/nowhere/s.crt", "key": "/nowhere/s.key",
                                   "min_version": "1.2"},
                           "acl": {"policy": "deny", "exclude": ["127.0.0.1"]}}
    assert t["workers"] == {"max_poll_events": 100, "input_buffer_size": 4096,
                            "auto_fragment": AUTO_FRAGMENT_SIZE}
    assert t["balancer"] == {"connection_weight": 2.0}
    notes = [line for line in result.text.splitlines() if line.startswith("# dropped: ")]
    for dropped in ("lapps_config_auto_save", "directories.app_conf_dir", "directories.tmp",
                    "directories.workdir", "directories.deploy", "max_poll_wait_ms", "max_inbounds_skip",
                    "tls_certificates.ca", "tls_client_version"):
        assert any(dropped in note for note in notes), dropped
    assert "auto_fragment = true; here it is the frame size" in result.text
    assert "tls_server_version = 3 (TLS 1.2)" in result.text


def test_migrate_services_internal_proto_alias_null_preload_unknown_module():
    result = migrate(WS, LAPPS, services_dir="/srv/apps", scripts={"chat", "ticker"})
    t = toml_of(result.text)
    chat, ticker = t["services"]["chat"], t["services"]["ticker"]
    assert chat["subprotocols"] == ["chat.v1"]
    assert chat["preload"] == ["time"]                 # pam_auth unknown, nap blocks, bcast always there
    assert chat["depends"] == ["ticker"]               # "gone" is not a service of this config
    assert chat["protocol"] == "LAppS" and chat["request_target"] == "/chat"
    assert ticker == {"standalone": True, "instances": 1}
    text = result.text
    assert 'preload: dropped "pam_auth": no such module here' in text
    assert 'preload: dropped "nap": it blocks' in text
    assert 'preload: dropped "bcast": a global of every service here' in text
    assert 'depends: dropped "gone"' in text
    assert "internal = true: the original's older name of standalone" in text
    assert "preload = null: no module asked for" in text
    assert 'proto_alias = "chat.v1"' in text
    assert result.warnings == ["lapps.json services.chat.preload: pam_auth is not a module of this server (dropped)"]


def test_migrate_leaves_tls_off_without_its_files_and_comments_out_a_service_without_script():
    result = migrate(WS, LAPPS, services_dir="/srv/apps", scripts={"chat", "ticker"})
    t = toml_of(result.text)
    assert t["server"]["tls"]["enabled"] is False
    assert "tls = true, but /nowhere/s.crt and /nowhere/s.key not found: TLS left off" in result.text
    assert "missing" not in t["services"]
    assert "# [services.missing] left out: no script <services_dir>/missing/missing.lua" in result.text
    assert "# standalone = true" in result.text


def test_migrate_descriptor_fills_what_lapps_json_lacks_and_is_overruled_where_both_say():
    lapps = {"services": {"svc": {"standalone": True, "instances": 2}}}
    descriptor = {"name": "svc", "instances": 1, "preload": ["murmur"], "auto_start": False, "color": "red"}
    result = migrate({}, lapps, {"svc": descriptor}, services_dir="/s", scripts={"svc"})
    svc = toml_of(result.text)["services"]["svc"]
    assert svc == {"standalone": True, "instances": 2, "preload": ["murmur"], "auto_start": False}
    assert "instances: svc.json says 1; lapps.json's 2 is kept" in result.text
    assert "preload: from svc.json" in result.text
    assert 'dropped: lapps.json services.svc.color = "red": not a setting of this server' in result.text
    assert result.warnings == ["lapps.json services.svc.color: not a setting of this server (dropped)"]


def test_migrate_tls_versions_older_than_1_2_become_1_2_with_a_note():
    text = migrate({"tls": False, "tls_server_version": 1}, {}, services_dir="/s").text
    assert toml_of(text)["server"]["tls"] == {"enabled": False, "min_version": "1.2"}
    assert "tls_server_version = 1 (TLS 1.0): TLS 1.2 is the oldest offered here" in text


@pytest.mark.parametrize("ws, lapps", [([], {}), ({}, "x"), ({"workers": 3}, {}), ({}, {"services": []})])
def test_migrate_input_that_is_not_an_original_config_is_refused(ws, lapps):
    with pytest.raises(MigrationError):
        migrate(ws, lapps, services_dir="/s")


def write_original_layout(root: Path) -> tuple[Path, Path]:
    """A LAPPS_HOME as the original lays it out: etc/ws.json, etc/lapps.json, apps/<name>/."""
    (root / "etc").mkdir()
    ws, lapps = root / "etc" / "ws.json", root / "etc" / "lapps.json"
    ws.write_text(json.dumps(WS))
    lapps.write_text(json.dumps(LAPPS))
    for name, source in (("chat", NOOP_REACTIVE), ("ticker", NOOP_STANDALONE)):
        (root / "apps" / name).mkdir(parents=True)
        (root / "apps" / name / f"{name}.lua").write_text(source)
    (root / "apps" / "ticker" / "ticker.json").write_text(json.dumps({"name": "ticker", "auto_start": True}))
    return ws, lapps


def test_migrate_config_command_writes_a_file_check_config_accepts(tmp_path):
    ws, lapps = write_original_layout(tmp_path)
    out = tmp_path / "lapps.toml"
    done = run_cli("migrate-config", str(ws), str(lapps), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "pam_auth is not a module of this server" in done.stderr
    assert f"wrote {out} (2 of 3 services" in done.stderr
    t = tomllib.loads(out.read_text())
    assert t["server"]["services_dir"] == str(tmp_path / "apps")
    assert t["services"]["ticker"]["auto_start"] is True            # from apps/ticker/ticker.json
    checked = run_cli("check-config", "--config", str(out))
    assert checked.returncode == 0, checked.stderr
    assert f"config OK ({out})" in checked.stdout


def test_migrate_config_command_to_stdout_and_bad_input(tmp_path):
    ws, lapps = write_original_layout(tmp_path)
    done = run_cli("migrate-config", str(ws), str(lapps))
    assert done.returncode == 0 and tomllib.loads(done.stdout)["server"]["port"] == 6083
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    done = run_cli("migrate-config", str(ws), str(bad))
    assert done.returncode == 1 and "lapps migrate-config: Expecting property name" in done.stderr
    done = run_cli("migrate-config", str(ws), str(tmp_path / "none.json"))
    assert done.returncode == 1 and "No such file or directory" in done.stderr


def test_migrated_config_serves_the_original_style_service(tmp_path):
    """A ws.json + lapps.json for a raw echo (the shipped services/echo, laid out as the original
    deploys it): the migrated file starts a server that echoes."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "apps" / "echo").mkdir(parents=True)
    (tmp_path / "apps" / "echo" / "echo.lua").write_text((REPO / "services" / "echo" / "echo.lua").read_text())
    port = free_port()
    ws = {"ip": "127.0.0.1", "port": port, "listeners": 1, "workers": {"workers": 1, "auto_fragment": False},
          "tls": False, "acl": {"policy": "allow", "exclude": []}}
    lapps = {"directories": {"applications": "apps"},
             "services": {"echo": {"internal": False, "instances": 1, "protocol": "raw",
                                   "request_target": "/echo", "preload": None}}}
    (tmp_path / "etc" / "ws.json").write_text(json.dumps(ws))
    (tmp_path / "etc" / "lapps.json").write_text(json.dumps(lapps))
    out = tmp_path / "lapps.toml"
    done = run_cli("migrate-config", str(tmp_path / "etc" / "ws.json"), str(tmp_path / "etc" / "lapps.json"),
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lapps", "--config", str(out), "--admin-port", "0"],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ))
    server = Server(proc, port, out, log_path, workers=1)
    try:
        server.wait_ready()
        assert wsclient.echo_ok(port, "migrated")
    finally:
        server.stop()


original = pytest.mark.skipif(not ORIGINAL.is_dir(),
                              reason=f"SKIPPED: the original LAppS files are not at {ORIGINAL}")


@original
def test_migrate_config_the_originals_configs_with_all_its_applications(tmp_path):
    """examples/conf/{ws,lapps}.json with every service folder of the original (examples/ and
    apps/benchmark) in one apps/ folder, as the original deploys them: every service kept."""
    apps = tmp_path / "apps"
    apps.mkdir()
    for folder in [*(ORIGINAL / "examples").iterdir(), ORIGINAL / "apps" / "benchmark"]:
        if (folder / f"{folder.name}.lua").is_file():
            (apps / folder.name).symlink_to(folder)
    out = tmp_path / "lapps.toml"
    conf = ORIGINAL / "examples" / "conf"
    done = run_cli("migrate-config", str(conf / "ws.json"), str(conf / "lapps.json"),
                   "--services-dir", str(apps), "-o", str(out))
    assert done.returncode == 0, done.stderr
    t = tomllib.loads(out.read_text())
    assert set(t["services"]) == {"echo", "echo_lapps", "time_broadcast", "benchmark", "mqr_sender", "mqr_receiver"}
    assert t["services"]["echo_lapps"]["protocol"] == "LAppS"
    assert t["server"]["workers"] == 3 and t["server"]["tls"]["enabled"] is False   # no /opt/lapps here
    checked = run_cli("check-config", "--config", str(out))
    assert checked.returncode == 0, checked.stderr


@original
def test_migrate_config_the_originals_examples_folder_as_it_is(tmp_path):
    """Without --services-dir, examples/ (the folder above conf/) holds the services; benchmark
    lives in apps/, so it is written commented out, and the result still checks."""
    out = tmp_path / "lapps.toml"
    conf = ORIGINAL / "examples" / "conf"
    done = run_cli("migrate-config", str(conf / "ws.json"), str(conf / "lapps.json"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "# [services.benchmark] left out: no script" in text
    assert tomllib.loads(text)["server"]["services_dir"] == str(ORIGINAL / "examples")
    checked = run_cli("check-config", "--config", str(out))
    assert checked.returncode == 0, checked.stderr

"""Hot deploy: archives checked with bytes alone, then deployed into a running server (by
`lapps deploy` and by dropping them into deploy_dir) while other connections stay open."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import REPO, wait_for
from lapps.deploy import DeployError, check_members, unpack
from wsclient import connect

ORIGINAL = REPO.parent / "shared" / "original-lapps" / "examples"


def make_archive(path: Path, files: dict[str, str | bytes], links: dict[str, str] | None = None) -> Path:
    """A tar.gz at `path` with `files` (name -> content) and symbolic `links` (name -> target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def service(name: str, answer: str, descriptor: dict | None = None, lua: str | None = None) -> dict[str, str]:
    """The files of a raw echo-like service that answers "<answer>: <message>"."""
    source = lua if lua is not None else f"""
local s = {{}}
function s.onStart() print("{answer} started") end
function s.onShutdown() print("{answer} stopped") end
function s.onDisconnect(h) end
function s.onMessage(h, op, m) ws:send(h, op, "{answer}: " .. m) return true end
return s
"""
    desc = descriptor or {"name": name, "protocol": "raw", "request_target": f"/{name}", "auto_start": True,
                          "standalone": False, "instances": 1, "max_inbound_message_size": 65536}
    return {f"{name}/{name}.lua": source, f"{name}/{name}.json": json.dumps(desc)}


# -- the checks, on archives alone ----------------------------------------------------------

@pytest.mark.parametrize("files, links, why", [
    ({"chat/chat.lua": "", "../evil.lua": ""}, None, "a path outside the service folder"),
    ({"/etc/chat/chat.lua": ""}, None, "a path outside the service folder"),
    ({"chat/chat.lua": "", "other/x.lua": ""}, None, "expected one top folder (the service), found 2"),
    ({"chat/chat.lua": ""}, {"chat/passwd": "/etc/passwd"}, "only plain files and folders"),
    ({"9chat/9chat.lua": ""}, None, "a service name is letters, digits and _"),
])
def test_members_that_cannot_be_deployed(tmp_path, files, links, why):
    archive = make_archive(tmp_path / "a.tar.gz", files, links)
    with tarfile.open(archive) as tar, pytest.raises(DeployError, match=re.escape(why)):
        check_members(tar.getmembers())


@pytest.mark.parametrize("files, why", [
    ({"chat/chat.json": "{}"}, "no chat/chat.lua in the archive"),
    ({"chat/chat.lua": "return {}"}, "no chat/chat.json in the archive"),
    ({"chat/chat.lua": "", "chat/chat.json": "[1]"}, "expected a JSON object"),
    ({"chat/chat.lua": "", "chat/chat.json": "{"}, "chat/chat.json: Expecting"),
    ({"chat/chat.lua": "", "chat/chat.json": '{"name": "other"}'}, "names the service 'other'"),
])
def test_archives_without_what_a_service_needs(tmp_path, files, why):
    archive = make_archive(tmp_path / "a.tar.gz", files)
    with pytest.raises(DeployError, match=why):
        unpack(archive, tmp_path, set())
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar.gz"], "nothing left behind"


def test_not_a_tar_archive(tmp_path):
    bad = tmp_path / "a.tar.gz"
    bad.write_bytes(b"not a tar at all")
    with pytest.raises(DeployError, match="not a readable tar archive"):
        unpack(bad, tmp_path, set())


def test_the_descriptor_becomes_the_service_table(tmp_path):
    desc = {"name": "chat", "protocol": "LAppS", "request_target": "/chat", "instances": 2,
            "preload": ["time", "pam_auth"], "depends": ["store", "absent"]}
    archive = make_archive(tmp_path / "chat.tar.gz", service("chat", "x", desc))
    staged = unpack(archive, tmp_path, {"store"})
    text = (staged.folder / "service.toml").read_text()
    assert "[services.chat]" in text and 'protocol = "LAppS"' in text and 'request_target = "/chat"' in text
    assert 'preload = ["time"]' in text and 'dropped "pam_auth"' in text
    assert 'depends = ["store"]' in text and 'dropped "absent"' in text
    assert any("pam_auth" in w for w in staged.warnings)


# -- into a running server -----------------------------------------------------------------------

def deploy_cli(server, archive: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lapps", "deploy", "--config", str(server.config),
                           str(archive), *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def ask(port: int, target: str, text: str) -> str:
    with connect(port, target) as c:
        assert c.status == 101, (target, c.status)
        c.send_text(text)
        return c.recv_frame(timeout=5).payload.decode()


@pytest.fixture
def deploying(lapps_server, tmp_path):
    folder = tmp_path / "deploy"
    folder.mkdir()
    server = lapps_server(settings={"server": {"deploy_dir": str(folder)}}, workers=2)
    server.deploy_dir = folder
    return server


def test_deploy_a_new_service_then_replace_it_while_connections_stay_open(deploying, tmp_path):
    server = deploying
    bystander = connect(server.port, "/echo")
    assert bystander.status == 101
    done = deploy_cli(server, make_archive(tmp_path / "chat.tar.gz", service("chat", "v1")))
    assert done.returncode == 0, done.stderr
    assert "chat.tar.gz deployed" in done.stdout
    assert ask(server.port, "/chat", "hi") == "v1: hi"
    assert ask(server.port, "/chat", "again") == "v1: again"   # whichever worker takes it
    old = connect(server.port, "/chat")
    assert old.status == 101
    done = deploy_cli(server, make_archive(tmp_path / "chat.tar.gz", service("chat", "v2")))
    assert done.returncode == 0, done.stderr
    for _ in range(4):   # both workers serve the new version to new connections
        assert ask(server.port, "/chat", "hi") == "v2: hi"
    old.send_text("still here")          # an open connection keeps the version it opened with
    assert old.recv_frame(timeout=5).payload == b"v1: still here"
    old.close()
    bystander.send_text("untouched")
    assert bystander.recv_frame(timeout=5).payload == b"untouched"
    bystander.close()
    server.wait_log(r"\[chat\] v1 stopped", count=2)   # the old instances, once unused
    assert (Path(server.config).parent / "services" / "chat" / "service.toml").is_file()
    assert list(server.deploy_dir.iterdir()) == []


def test_an_archive_that_does_not_compile_is_refused_by_the_cli_and_by_the_server(deploying, tmp_path):
    server = deploying
    good = make_archive(tmp_path / "chat.tar.gz", service("chat", "v1"))
    assert deploy_cli(server, good).returncode == 0
    bad = make_archive(tmp_path / "broken.tar.gz", service("chat", "v2", lua="local x = = 1\nreturn {}\n"))
    done = deploy_cli(server, bad)
    assert done.returncode == 1 and "refused" in done.stderr and "chat/chat.lua:1:" in done.stderr
    assert list(server.deploy_dir.iterdir()) == [], "the CLI refused it before handing it over"
    dropped = server.deploy_dir / "broken.tar.gz"    # dropped by hand: the master refuses it
    dropped.write_bytes(bad.read_bytes())
    reason = server.deploy_dir / "broken.tar.gz.rejected.txt"
    assert wait_for(reason.exists, 10), server.log()
    assert "chat/chat.lua:1:" in reason.read_text()
    assert ask(server.port, "/chat", "hi") == "v1: hi"
    server.wait_log(r"deploy: broken.tar.gz refused, nothing changed")


def test_a_service_that_cannot_start_is_rolled_back_on_every_worker(deploying, tmp_path):
    server = deploying
    assert deploy_cli(server, make_archive(tmp_path / "chat.tar.gz", service("chat", "v1"))).returncode == 0
    no_handler = "local s = {}\nfunction s.onStart() end\nreturn s\n"   # compiles, lacks onMessage
    done = deploy_cli(server, make_archive(tmp_path / "chat.tar.gz", service("chat", "v2", lua=no_handler)))
    assert done.returncode == 1, done.stdout
    assert "refused by the server" in done.stderr and "onMessage" in done.stderr
    for _ in range(4):
        assert ask(server.port, "/chat", "hi") == "v1: hi"
    lua = (Path(server.config).parent / "services" / "chat" / "chat.lua").read_text()
    assert "v1" in lua, "the old files are back"


def test_a_new_service_that_cannot_start_is_not_served_afterwards(deploying, tmp_path):
    server = deploying
    no_handler = "local s = {}\nfunction s.onStart() end\nreturn s\n"
    done = deploy_cli(server, make_archive(tmp_path / "chat.tar.gz", service("chat", "v1", lua=no_handler)))
    assert done.returncode == 1
    with connect(server.port, "/chat") as c:
        assert c.status == 404
    assert not (Path(server.config).parent / "services" / "chat").exists()


@pytest.mark.skipif(not ORIGINAL.is_dir(), reason=f"the original LAppS files are not here ({ORIGINAL})")
def test_the_original_time_broadcast_deploys_as_a_standalone_service(deploying, tmp_path):
    server = deploying
    archive = tmp_path / "time_broadcast.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ORIGINAL / "time_broadcast", arcname="time_broadcast")
    done = deploy_cli(server, archive)
    assert done.returncode == 0, done.stderr
    server.wait_log(r"service time_broadcast#1 started")
    server.wait_log(r"\[time_broadcast\] running")
    assert server.running()


def test_deploy_needs_deploy_dir(lapps_server, tmp_path):
    server = lapps_server()
    done = deploy_cli(server, make_archive(tmp_path / "chat.tar.gz", service("chat", "v1")))
    assert done.returncode == 1 and "deploy_dir is not set" in done.stderr

"""Static files from the WebSocket port ([server] static_dir), through the real server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import wsclient
from lapps.client import connect
from lapps.config import ConfigError, load_config

INDEX = b"<!DOCTYPE html><title>demo</title>\n"
APP = b"export const x = 1;\n"
SECRET = b"outside the folder\n"
CAP = 4096
# a raw echo mounted on "/", where the static folder's index.html is too
ROOT_ECHO = """
local root = {}
function root.onStart() end
function root.onShutdown() end
function root.onDisconnect(handler) end
function root.onMessage(handler, opcode, message) ws:send(handler, opcode, message); return true end
return root
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A static folder with a page, assets, a sub folder, a file over the cap and symlinks
    that stay in or lead out; `secret.txt` lies beside it, outside."""
    root = tmp_path_factory.mktemp("static")
    (root / "secret.txt").write_bytes(SECRET)
    site = root / "site"
    (site / "sub").mkdir(parents=True)
    (site / "bare").mkdir()
    (site / "index.html").write_bytes(INDEX)
    (site / "app.js").write_bytes(APP)
    (site / "sub" / "index.html").write_bytes(b"sub page\n")
    (site / "sub" / "page.css").write_bytes(b"body{}\n")
    (site / "big.bin").write_bytes(b"x" * (CAP + 1))
    (site / ".hidden").write_bytes(b"dot file\n")
    os.symlink("app.js", site / "alias.js")                   # stays inside: served
    os.symlink(root / "secret.txt", site / "leak.txt")        # leads out: refused
    os.symlink(root, site / "up")                             # a folder link out: refused
    return site


@pytest.fixture(scope="module")
def server(lapps_server_module, folder):
    return lapps_server_module(settings={"server": {"static_dir": str(folder)},
                                         "limits": {"max_static_file_size": CAP}})


def http(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a raw request head; read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def get(port: int, target: str, method: str = "GET", extra: str = "") -> tuple[int, dict[str, str], bytes]:
    return http(port, f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode("latin-1"))


def test_slash_serves_index_html_with_type_length_and_validators(server):
    status, headers, body = get(server.port, "/")
    assert (status, body) == (200, INDEX)
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-length"] == str(len(INDEX))
    assert headers["etag"].startswith('"') and headers["last-modified"].endswith("GMT")
    status, headers, body = get(server.port, "/app.js?v=2")
    assert (status, body, headers["content-type"]) == (200, APP, "text/javascript; charset=utf-8")
    assert get(server.port, "/sub/")[2] == b"sub page\n"
    assert get(server.port, "/sub/page.css")[1]["content-type"] == "text/css; charset=utf-8"


def test_head_has_the_headers_and_no_body(server):
    status, headers, body = get(server.port, "/index.html", "HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(INDEX)))
    assert get(server.port, "/missing.html", "HEAD")[::2] == (404, b"")


def test_if_none_match_and_if_modified_since_answer_304(server):
    _, headers, _ = get(server.port, "/app.js")
    status, again, body = get(server.port, "/app.js", extra=f"If-None-Match: {headers['etag']}\r\n")
    assert (status, body, again["etag"]) == (304, b"", headers["etag"])
    status, _, body = get(server.port, "/app.js", extra=f"If-Modified-Since: {headers['last-modified']}\r\n")
    assert (status, body) == (304, b"")
    status, _, body = get(server.port, "/app.js", extra='If-None-Match: "stale"\r\n')
    assert (status, body) == (200, APP)


@pytest.mark.parametrize("target", ["/missing.html", "/sub", "/bare/", "/.hidden", "/big.bin"])
def test_missing_files_folders_dot_files_and_files_over_the_cap_are_404(server, target):
    status, _, body = get(server.port, target)
    assert status == 404 and b"<" not in body      # a short text, never a listing


@pytest.mark.parametrize("target", [
    "/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/sub/%2E%2E/%2e%2e/secret.txt",
    "/..%2fsecret.txt", "/sub%2f..%2f..%2fsecret.txt", "/index.html%00", "/%00/secret.txt",
    "/leak.txt", "/up/secret.txt", "//secret.txt",
])
def test_traversal_encoded_dots_and_slashes_nul_and_symlinks_out_are_refused(server, target):
    status, _, body = get(server.port, target)
    assert status == 404 and SECRET not in body


def test_a_symlink_that_stays_inside_is_served(server):
    assert get(server.port, "/alias.js")[::2] == (200, APP)


def test_request_heads_over_the_limits_get_431(server):
    assert get(server.port, "/", extra="X-Pad: " + "a" * 9000 + "\r\n")[0] == 431
    assert get(server.port, "/", extra="".join(f"X-{i}: 1\r\n" for i in range(101)))[0] == 431


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",   # an upgrade, broken
])
def test_what_is_not_a_plain_get_stays_400(server, head):
    assert http(server.port, head)[0] == 400


def test_an_unfinished_request_head_is_dropped_at_the_handshake_timeout(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=8) as s:
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: a\r\n")
        assert s.recv(100) == b""     # handshake_timeout is 2 s in the test settings


def test_websockets_still_upgrade_beside_static_files(server):
    assert wsclient.echo_ok(server.port, "still a WebSocket port")


def test_an_upgrade_on_a_static_path_upgrades(lapps_server, folder):
    server = lapps_server({"root": {"request_target": "/"}}, lua={"root": ROOT_ECHO},
                          settings={"server": {"static_dir": str(folder)}})
    assert get(server.port, "/")[::2] == (200, INDEX)
    with connect(f"ws://127.0.0.1:{server.port}/") as c:
        c.send_text("upgraded on /")
        assert c.recv(timeout=5) == (1, b"upgraded on /")


def test_static_files_are_off_by_default_and_a_plain_get_stays_400(lapps_server):
    server = lapps_server()
    assert get(server.port, "/index.html")[0] == 400
    assert get(server.port, "/", "HEAD")[0] == 400


def test_static_dir_must_be_an_existing_folder(tmp_path):
    config = tmp_path / "lapps.toml"
    config.write_text('[server]\nstatic_dir = "no/such/folder"\n')
    with pytest.raises(ConfigError, match=r"server\.static_dir: expected .*existing folder"):
        load_config(str(config))
    (tmp_path / "pages").mkdir()
    config.write_text('[server]\nstatic_dir = "pages"\n')
    assert load_config(str(config)).server.static_dir == str(tmp_path / "pages")
    assert load_config(None).server.static_dir == ""


def test_a_file_over_the_cap_is_404_and_warned_about_once(server):
    for _ in range(3):
        assert get(server.port, "/big.bin")[0] == 404
    lines = server.wait_log(r"big\.bin is 4097 bytes, over \[limits\] max_static_file_size \(4096\)")
    assert len(lines) == 1, lines

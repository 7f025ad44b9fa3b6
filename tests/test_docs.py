"""The documents are true to the code: docs/*.svg are what Graphviz makes of docs/*.dot, the
slot table of docs/architecture.md is what lapps/ipc/slots.py says, layering.dot's arrows are
the imports, the links stay inside the repository, and the marked code examples of README.md
and docs/*.md run against the real server.

An example runs when the line before its fence is `<!-- doc-test: KIND -->`:
- `lua-raw-echo`: a raw service's Lua module; it is served and must echo text and binary;
- `python`: run with this Python against a server with the shipped echo, echo_lapps and
  time_broadcast services (`ws://127.0.0.1:5083` becomes the test server's address);
- `shell`: run with bash in the repository, `lapps` being this checkout's `python -m lapps`.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

import wsclient
from conftest import REPO
from lapps.ws.constants import Opcode

DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS))
import make_docs  # noqa: E402

DOCUMENTS = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
MARK = re.compile(r"^<!-- doc-test: ([\w-]+) -->\n```(\w*)\n(.*?)^```", re.M | re.S)
KINDS = ("lua-raw-echo", "python", "shell")


def snippets() -> list[tuple[str, str, str]]:
    """(id, kind, code) of every marked example."""
    found = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        for m in MARK.finditer(text):
            line = text.count("\n", 0, m.start()) + 2
            found.append((f"{doc.relative_to(REPO)}:{line}", m.group(1), m.group(3)))
    return found


SNIPPETS = snippets()


# ---------------------------------------------------------------------- pictures and tables


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="SKIPPED: no Graphviz `dot` here (make test installs Debian's graphviz)")
@pytest.mark.parametrize("source", sorted(DOCS.glob("*.dot")), ids=lambda p: p.name)
def test_committed_svg_is_what_dot_makes_of_its_source(source):
    svg = source.with_suffix(".svg")
    assert svg.is_file(), f"{svg.name} is missing: run make docs"
    assert svg.read_text() == make_docs.render(source), f"{svg.name} is stale: run make docs"


def test_architecture_slot_table_is_what_slots_py_says():
    text = make_docs.ARCHITECTURE.read_text()
    assert make_docs.architecture_with_slot_table(text) == text, "the slot table is stale: run make docs"
    rows = make_docs.slot_rows()
    assert rows[-1][0] + rows[-1][1] <= make_docs.slots.SLOT_SIZE
    assert [r[3] for r in rows[:3]] == ["pid", "state", "heartbeat"]


LAYERS = {"lapps.cli": "cli", "lapps.commands": "cli", "lapps.__main__": "cli", "workers": "workers",
          "lapps.master": "master", "lapps.admin": "admin", "lapps.migrate": "migrate", "lapps.lua": "lua",
          "lapps.ipc": "ipc", "lapps.lapps_protocol": "proto", "lapps.config": "config",
          "lapps.client": "client", "lapps.ws": "ws"}


def _layer(module: str) -> str | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def imports_between_layers() -> set[tuple[str, str]]:
    edges = set()
    for path in [*(REPO / "lapps").rglob("*.py"), *(REPO / "workers").rglob("*.py")]:
        parts = path.relative_to(REPO).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if parts[-1] == "__init__" else module.rpartition(".")[0]
        source = _layer(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [base] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                layer = _layer(target)
                if source and layer and layer != source:
                    edges.add((source, layer))
    return edges


def test_layering_picture_has_exactly_the_imports_between_packages():
    dot = (DOCS / "layering.dot").read_text()
    drawn = set()
    for line in dot.splitlines():
        for chain in line.split(";"):
            m = re.match(r"\s*(\w+)\s*->\s*(\w+)", chain)
            if m:
                drawn.add((m.group(1), m.group(2)))
    actual = imports_between_layers()
    assert actual - drawn == set(), "imports the picture does not show"
    assert drawn - actual == set(), "arrows the code does not have"


def test_documents_link_inside_the_repository():
    """A clone has everything the documents send a reader to (the design document that used to
    live outside the repository is docs/architecture.md now)."""
    for doc in DOCUMENTS:
        text = doc.read_text()
        assert "shared/DESIGN.md" not in text, f"{doc.name} points to the design outside the repository"
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if re.match(r"\w+://", target):
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(REPO), f"{doc.name}: link {target} leaves the repository"
            assert path.exists(), f"{doc.name}: broken link {target}"
    readme = (REPO / "README.md").read_text()
    assert "](docs/architecture.md)" in readme and "](docs/lua-api.md)" in readme
    assert "](CHANGELOG.md)" in readme


# ---------------------------------------------------------------------- the examples run


def test_examples_are_marked_and_of_known_kinds():
    kinds = {kind for _, kind, _ in SNIPPETS}
    assert kinds <= set(KINDS), kinds - set(KINDS)
    assert kinds == set(KINDS) and len(SNIPPETS) >= 4, SNIPPETS


def _of_kind(kind: str) -> list:
    return [pytest.param(code, id=sid) for sid, k, code in SNIPPETS if k == kind]


@pytest.mark.parametrize("code", _of_kind("lua-raw-echo"))
def test_doc_lua_service_example_echoes(lapps_server, code):
    server = lapps_server({"doc_example": {}}, lua={"doc_example": code})
    with wsclient.connect(server.port, "/doc_example") as c:
        assert c.status == 101
        c.send_text("from the docs")
        assert c.recv_message() == (Opcode.TEXT, b"from the docs")
        c.send_frame(Opcode.BINARY, b"\x00\xff")
        assert c.recv_message() == (Opcode.BINARY, b"\x00\xff")


def shipped_services(*names: str) -> dict:
    return {n: tomllib.loads((REPO / "etc" / "lapps.toml").read_text())["services"][n] for n in names}


@pytest.mark.parametrize("code", _of_kind("python"))
def test_doc_python_example_runs(lapps_server, code):
    server = lapps_server(shipped_services("echo", "echo_lapps", "time_broadcast"))
    code = code.replace("ws://127.0.0.1:5083", f"ws://127.0.0.1:{server.port}")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("code", _of_kind("shell"))
def test_doc_shell_example_runs(tmp_path, code):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lapps").write_text(f'#!/bin/sh\nexec {sys.executable} -m lapps "$@"\n')
    (bin_dir / "lapps").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    env.pop("LAPPS_CONFIG", None)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"

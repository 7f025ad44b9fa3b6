"""`python -m lapps.lua.check FOLDER`: do the Lua files of a service folder compile?

Run by the master as a child process before it installs a deployed service (the master
itself never runs Lua): every `*.lua` below FOLDER is compiled, as text, in a sandboxed state
(nothing is run). Prints one line per file that does not compile (`file:line: message`)
and exits 1 then, else 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .runtime import new_runtime

_COMPILE = (Path(__file__).parent / "check.lua").read_bytes()


def problems(folder: Path) -> list[str]:
    """`file:line: message` for each Lua file below `folder` that does not compile."""
    lua = new_runtime("deploy-check", str(folder)).lua
    compile_one = lua.eval(b"function(...) " + _COMPILE + b" end")
    out = []
    for path in sorted(folder.rglob("*.lua")):
        rel = path.relative_to(folder.parent)
        ok, err = compile_one(path.read_bytes(), b"@" + str(rel).encode())
        if not ok:
            text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            out.append(text if text.startswith(str(rel)) else f"{rel}: {text}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lapps.lua.check FOLDER", file=sys.stderr)
        return 2
    found = problems(Path(argv[0]))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`lapps deploy ARCHIVE`: hand a service archive to a running server's hot deploy.

The same checks the master makes (lapps/deploy.py, and the Lua compile check) run here
first, so a bad archive is refused where it was given, with the reason; then the archive is
copied into `[server] deploy_dir` (under a dot name, then renamed, so the master never reads
half a file) and the command waits for the master's verdict: the archive removed (deployed)
or set aside as ARCHIVE.rejected with ARCHIVE.rejected.txt (refused, and why).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..config import ConfigError
from ..deploy import DeployError, discard, is_archive, unpack
from . import add_config_flags, new_parser
from .config import read_config


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("lapps deploy",
                   "Deploy a service archive (a tar, tar.gz or tar.bz2 with one folder NAME holding "
                   "NAME.json, the original LAppS's descriptor, and NAME.lua) into a running server: "
                   "it is checked here, copied into [server] deploy_dir, and the server starts the "
                   "service or replaces the running version while every other connection stays open.",
                   ["lapps deploy chat.tar.gz --config /etc/lapps/lapps.toml",
                    "lapps deploy chat.tar.gz --wait 0   # copy it and do not wait"])
    add_config_flags(p)
    p.add_argument("archive", metavar="ARCHIVE", help="the service archive")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the server's verdict (default 30; 0: do not wait)")
    return p


def deploy_main(argv: list[str]) -> int:
    """0 deployed (or handed over with --wait 0); 1 refused, with the reason; 2 not taken in time."""
    args = build_parser().parse_args(argv)
    archive = Path(args.archive)
    try:
        config = read_config(args)
    except ConfigError as e:
        print(f"lapps deploy: config error: {e}", file=sys.stderr)
        return 1
    if not config.server.deploy_dir:
        print("lapps deploy: [server] deploy_dir is not set in the configuration: hot deploy is off",
              file=sys.stderr)
        return 1
    if not is_archive(archive.name) or not archive.is_file():
        print(f"lapps deploy: {archive}: expected a .tar, .tar.gz or .tar.bz2 file", file=sys.stderr)
        return 1
    problem = _check(archive, set(config.services))
    if problem:
        print(f"lapps deploy: {archive.name} refused: {problem}", file=sys.stderr)
        return 1
    folder = Path(config.server.deploy_dir)
    target = folder / archive.name
    rejected = target.with_name(target.name + ".rejected")
    for old in (rejected, rejected.with_name(rejected.name + ".txt")):
        old.unlink(missing_ok=True)
    part = folder / f".{archive.name}.part"
    shutil.copyfile(archive, part)
    part.replace(target)
    if args.wait <= 0:
        print(f"lapps deploy: {archive.name} is in {folder}; the server takes it within a second or two")
        return 0
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if not target.exists():
            reason = rejected.with_name(rejected.name + ".txt")
            if rejected.exists():
                why = reason.read_text(encoding="utf-8").strip() if reason.exists() else "see the server log"
                print(f"lapps deploy: {archive.name} refused by the server: {why}", file=sys.stderr)
                return 1
            print(f"lapps deploy: {archive.name} deployed")
            return 0
        time.sleep(0.2)
    print(f"lapps deploy: {archive.name} is in {folder} but the server has not taken it in "
          f"{args.wait:g} s (is a server running with this configuration?)", file=sys.stderr)
    return 2


def _check(archive: Path, configured: set[str]) -> str | None:
    """Why the archive would be refused (the checks the master makes), or None."""
    from ..lua.check import problems   # Lua only here, not in the master
    with tempfile.TemporaryDirectory() as scratch:
        try:
            staged = unpack(archive, Path(scratch), configured)
        except DeployError as e:
            return str(e)
        try:
            found = problems(staged.folder)
        finally:
            discard(staged)
    return "; ".join(found) or None

"""The subcommands of `lapps`, one module per family; `lapps/cli.py` dispatches to them.

Every subcommand builds its parser with `new_parser`, so each `--help` says what the command
does and shows an example, and each accepts `--version`.
"""

from __future__ import annotations

import argparse

from .. import __version__

VERSION_TEXT = f"lapps {__version__}"


def new_parser(prog: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A parser for `prog` whose help ends with `examples` (one command line each)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=VERSION_TEXT,
                   help="print the version and exit")
    return p


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """--config and the flags that override its keys: what serve, check-config and
    print-config share (so each shows the config the server would run with)."""
    p.add_argument("--config", metavar="PATH",
                   help="config file (default: $LAPPS_CONFIG, else the shipped etc/lapps.toml)")
    p.add_argument("--workers", type=int, metavar="N", help="IO worker processes (server.workers)")
    p.add_argument("--listeners", type=int, metavar="N", help="accept loops (server.listeners)")
    p.add_argument("--port", type=int, help="listening port (server.port)")
    p.add_argument("--ip", help="listening address (server.ip)")
    p.add_argument("--admin-port", type=int, metavar="N", help="admin HTTP port (admin.port; 0 = off)")


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The dotted config keys the flags of `add_config_flags` set (None: flag not given)."""
    return {"server.workers": args.workers, "server.listeners": args.listeners,
            "server.port": args.port, "server.ip": args.ip, "admin.port": args.admin_port}

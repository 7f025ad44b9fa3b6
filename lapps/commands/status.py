"""`lapps status`: a client of a running server's admin endpoint (`/status`), not a server."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request

from ..admin import format_status
from ..config import ConfigError, default_config_path, load_config
from . import new_parser


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("lapps status",
                   "Per-worker counters of a running server (connections, messages/s, memory, CPU), "
                   "read from its admin endpoint's /status.",
                   ["lapps status", "lapps status --admin 127.0.0.1:5084 --json"])
    p.add_argument("--admin", metavar="HOST:PORT", help="the admin endpoint (default: [admin] of the config)")
    p.add_argument("--config", metavar="PATH",
                   help="config file to read [admin] from (default: $LAPPS_CONFIG, else etc/lapps.toml)")
    p.add_argument("--json", action="store_true", help="print the /status JSON as it is")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer (default 3)")
    return p


def admin_url(args: argparse.Namespace) -> str:
    """http://HOST:PORT of the endpoint: --admin, else the config's [admin].
    Raises ValueError or ConfigError with the reason."""
    if args.admin:
        host, sep, port = args.admin.rpartition(":")
        if not sep:
            host, port = "127.0.0.1", args.admin
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdigit():
            raise ValueError(f"--admin: expected HOST:PORT, got {args.admin!r}")
    else:
        config = load_config(args.config or default_config_path())
        if not config.admin.port:
            raise ValueError(f"the admin endpoint is off ([admin] port = 0 in "
                             f"{config.source or 'the built-in defaults'}); pass --admin HOST:PORT")
        host, port = config.admin.ip, str(config.admin.port)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def status_main(argv: list[str]) -> int:
    """`lapps status [--admin HOST:PORT] [--config PATH] [--json]`: 0, or 1 with a message."""
    args = build_parser().parse_args(argv)
    try:
        url = admin_url(args) + "/status"
    except (ConfigError, ValueError) as e:
        print(f"lapps status: {e}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as r:
            status = json.loads(r.read())
    except (OSError, ValueError) as e:   # URLError, HTTPError, timeouts, bad JSON
        reason = getattr(e, "reason", None) or e
        print(f"lapps status: cannot reach the admin endpoint at {url}: {reason} "
              "(is the server running, with [admin] port set?)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        sys.stdout.write(format_status(status))
    return 0

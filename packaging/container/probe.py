"""The container's HEALTHCHECK: GET an admin path of the server in this container.

Exit 0 on a 200, 1 otherwise with the reason on stderr (what Docker keeps as the check's log).
The address is the one `lapps status` uses: [admin] ip and port of the config the server runs
with ($LAPPS_CONFIG, which the image sets), 0.0.0.0 meaning 127.0.0.1; so a mounted lapps.toml
with another admin port needs no change to the image. Run as
`/usr/lib/lapps/venv/bin/python -I /usr/lib/lapps/probe.py [/healthz|/readyz]`.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from lapps.commands.status import admin_url
from lapps.config import ConfigError

PATHS = ("/healthz", "/readyz")


def probe(path: str, timeout: float) -> tuple[bool, str]:
    """(True, body) when the endpoint answers `path` with 200, else (False, the reason)."""
    try:
        url = admin_url(argparse.Namespace(admin=None, config=None)) + path
    except (ConfigError, ValueError) as e:
        return False, str(e)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return True, r.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as e:   # before OSError: it is one, with a status and a body
        return False, f"{url}: {e.code} {e.read().decode(errors='replace').strip()}"
    except OSError as e:                  # refused, unreachable, timed out
        return False, f"{url}: {getattr(e, 'reason', None) or e}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="probe.py", description="GET an admin path; exit 0 on 200")
    p.add_argument("path", nargs="?", default="/healthz", choices=PATHS)
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    args = p.parse_args(argv)
    ok, text = probe(args.path, args.timeout)
    print(f"{args.path}: {text}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

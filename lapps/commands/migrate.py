"""`lapps migrate-config WS_JSON LAPPS_JSON [-o OUT.toml]`: the file side of lapps/migrate.py.

Reads the original's two JSON files and the per-service descriptors, finds out which service
scripts and TLS files exist (what `check-config` will look for), and writes the TOML.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..migrate import MigrationError, migrate
from . import new_parser


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("lapps migrate-config",
                   "Write a lapps.toml equivalent to the original LAppS's ws.json and lapps.json "
                   "(and each service's <name>/<name>.json descriptor), with a comment on every key "
                   "that is dropped or changed and why. `lapps check-config` accepts the result as "
                   "it is: a service whose script is not found is written commented out, and TLS "
                   "is left off while its certificate files are missing.",
                   ["lapps migrate-config /opt/lapps/etc/ws.json /opt/lapps/etc/lapps.json -o lapps.toml",
                    "lapps migrate-config conf/ws.json conf/lapps.json --services-dir . | less"])
    p.add_argument("ws_json", metavar="WS_JSON", help="the original's ws.json (server settings)")
    p.add_argument("lapps_json", metavar="LAPPS_JSON", help="the original's lapps.json (services)")
    p.add_argument("-o", "--output", metavar="OUT.toml", help="write here instead of to stdout")
    p.add_argument("--services-dir", metavar="DIR",
                   help="where the services' <name>/<name>.lua live (default: LAPPS_HOME/"
                        "<directories.applications>, LAPPS_HOME being the folder above LAPPS_JSON's; "
                        "else that folder itself when it holds the services, as the original's examples/ does)")
    return p


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def services_dir_for(lapps_json: str, lapps: dict[str, Any], given: str | None) -> str:
    """The absolute services folder: --services-dir, else the original's layout (see --help)."""
    if given:
        return os.path.abspath(given)
    home = os.path.dirname(os.path.dirname(os.path.abspath(lapps_json)))
    directories = lapps.get("directories") if isinstance(lapps.get("directories"), dict) else {}
    apps = os.path.join(home, str(directories.get("applications", "apps")))
    services = lapps.get("services") if isinstance(lapps.get("services"), dict) else {}
    if not os.path.isdir(apps) and any(os.path.isfile(os.path.join(home, n, f"{n}.lua")) for n in services):
        return home
    return apps


def migrate_main(argv: list[str]) -> int:
    """0 with the TOML written; 1 with the reason when a file cannot be read or is not JSON."""
    args = build_parser().parse_args(argv)
    try:
        ws, lapps = _read_json(args.ws_json), _read_json(args.lapps_json)
    except (OSError, ValueError) as e:
        print(f"lapps migrate-config: {e}", file=sys.stderr)
        return 1
    services = lapps.get("services") if isinstance(lapps, dict) else None
    services_dir = services_dir_for(args.lapps_json, lapps if isinstance(lapps, dict) else {}, args.services_dir)
    descriptors, scripts = {}, set()
    for name in services if isinstance(services, dict) else ():
        folder = os.path.join(services_dir, name)
        if os.path.isfile(os.path.join(folder, f"{name}.lua")):
            scripts.add(name)
        try:
            descriptors[name] = _read_json(os.path.join(folder, f"{name}.json"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            print(f"lapps migrate-config: {e}", file=sys.stderr)
            return 1
    certs = ws.get("tls_certificates") if isinstance(ws, dict) else None
    present = {p for p in (certs.values() if isinstance(certs, dict) else ())
               if isinstance(p, str) and os.path.isfile(p)}
    try:
        result = migrate(ws, lapps, descriptors, services_dir=services_dir, scripts=scripts,
                         present_files=present, ws_name=os.path.basename(args.ws_json),
                         lapps_name=os.path.basename(args.lapps_json))
    except MigrationError as e:
        print(f"lapps migrate-config: {e}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"lapps migrate-config: {warning}", file=sys.stderr)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(result.text)
        print(f"lapps migrate-config: wrote {args.output} ({len(scripts)} of {len(services or ())} "
              f"services; check it with: lapps check-config --config {args.output})", file=sys.stderr)
    else:
        sys.stdout.write(result.text)
    return 0

"""Composition root: parse the command line, build the Config, wire the master.

The only module that knows both the master and the worker: it hands the worker's entry
function to the arbiter (as uvicorn's supervisor takes a `target`), so `lapps.master`
never imports `workers`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .config import Config, ConfigError, default_config_path, load_config, to_toml
from .logs import configure
from .tls import needs_tls, server_context


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lapps", description="LAppS: WebSocket application server for Lua services",
                                epilog="lapps status [--admin HOST:PORT] [--config PATH]: per-worker counters "
                                       "of a running server (see lapps status --help)")
    p.add_argument("--config", metavar="PATH",
                   help="config file (default: $LAPPS_CONFIG, else the shipped etc/lapps.toml)")
    p.add_argument("--workers", type=int, metavar="N", help="IO worker processes (server.workers)")
    p.add_argument("--listeners", type=int, metavar="N", help="accept loops (server.listeners)")
    p.add_argument("--port", type=int, help="listening port (server.port)")
    p.add_argument("--ip", help="listening address (server.ip)")
    p.add_argument("--admin-port", type=int, metavar="N", help="admin HTTP port (admin.port; 0 = off)")
    p.add_argument("--check-config", action="store_true", help="validate the config and exit (0 good, 1 bad)")
    p.add_argument("--print-config", action="store_true", help="print the merged config as TOML and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="one line per event: text, or a JSON object per line")
    p.add_argument("--log-file", metavar="PATH", help="append logs to PATH (SIGUSR1 reopens it) instead of stderr")
    return p


def config_problems(config: Config) -> list[str]:
    """Rules about what a service may use where, checked before anything starts.

    The blocking modules would stall every connection of a worker, so they are refused for
    reactive services instead of letting one `nap:sleep` freeze a worker.
    """
    problems = []
    for name, svc in config.services.items():
        for blocking in ("nap", "cws"):
            if blocking in svc.preload and not svc.standalone:
                problems.append(f"services.{name}.preload: {blocking} is for standalone services only "
                                "(it blocks, which would stall the worker)")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["status"]:   # `lapps status ...`: a client of the admin endpoint, not a server
        from .admin import status_main
        return status_main(argv[1:])
    args = build_parser().parse_args(argv)
    configure("master", args.log_level, args.log_file, args.log_format == "json")
    path = args.config or default_config_path()
    overrides = {"server.workers": args.workers, "server.listeners": args.listeners,
                 "server.port": args.port, "server.ip": args.ip, "admin.port": args.admin_port}
    def read_config() -> Config:
        """The config as the flags say; again on SIGHUP. Raises ConfigError."""
        config = load_config(path, overrides)
        if needs_tls(config.server):
            server_context(config.server.tls)   # the files load, or the start stops here
        problems = config_problems(config)
        if problems:
            raise ConfigError("; ".join(problems))
        return config

    try:
        config = read_config()
    except ConfigError as e:
        print(f"lapps: config error: {e}", file=sys.stderr)
        return 1
    if args.check_config:
        print(f"lapps: config OK ({config.source or 'built-in defaults'})")
        return 0
    if args.print_config:
        sys.stdout.write(to_toml(config))
        return 0
    from workers.main import worker_main
    from workers.standalone import standalone_main
    from .master.arbiter import Arbiter
    logging.getLogger("lapps.master").info("config: %s", config.source or "built-in defaults")
    try:
        return Arbiter(config, worker_main, standalone_main, args.log_level, read_config).run()
    except OSError as e:
        print(f"lapps: cannot start: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Composition root: the `lapps` command line, and the wiring of a serving master.

`lapps SUBCOMMAND ...` runs one of SUBCOMMANDS; anything else (no arguments, or flags first)
is `lapps serve`, so every command line that worked before subcommands existed still works,
`--check-config` and `--print-config` included. The other subcommands live in
`lapps/commands/`, one module per family.

This is the only module that knows both the master and the worker: it hands the worker's
entry function to the arbiter (as uvicorn's supervisor takes a `target`), so `lapps.master`
never imports `workers`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from functools import partial

from .commands import VERSION_TEXT, add_config_flags, new_parser
from .commands.config import check_config, check_config_main, print_config, print_config_main, read_config
from .config import Config, ConfigError
from .logs import configure


def build_parser() -> argparse.ArgumentParser:
    """`lapps serve` (also what `lapps` with only flags means)."""
    p = new_parser("lapps serve",
                   "Run the server: the master binds the port, forks the IO workers and the "
                   "standalone services, and serves until SIGTERM (SIGHUP reloads). The default "
                   "subcommand: `lapps --workers 2` is `lapps serve --workers 2`.",
                   ["lapps serve --config etc/lapps.toml --workers 2",
                    "lapps --port 9000 --log-format json --log-file /var/log/lapps.log"])
    add_config_flags(p)
    p.add_argument("--check-config", action="store_true",
                   help="validate the config and exit (0 good, 1 bad); same as `lapps check-config`")
    p.add_argument("--print-config", action="store_true",
                   help="print the merged config as TOML and exit; same as `lapps print-config`")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="one line per event: text, or a JSON object per line")
    p.add_argument("--log-file", metavar="PATH", help="append logs to PATH (SIGUSR1 reopens it) instead of stderr")
    return p


def serve_main(argv: list[str]) -> int:
    """`lapps serve`: run the master until it stops; its exit status."""
    args = build_parser().parse_args(argv)
    configure("master", args.log_level, args.log_file, args.log_format == "json")
    if args.check_config:
        return check_config(args)
    if args.print_config:
        return print_config(args)

    def reload_config() -> Config:
        """The config as the flags say, again on SIGHUP. Raises ConfigError."""
        return read_config(args)

    try:
        config = reload_config()
    except ConfigError as e:
        print(f"lapps: config error: {e}", file=sys.stderr)
        return 1
    from workers.main import worker_main
    from workers.standalone import standalone_main
    from .ipc.local import open_local_bus
    from .master.arbiter import Arbiter
    logging.getLogger("lapps.master").info("config: %s", config.source or "built-in defaults")
    # the composition root: every process opens its bus (after its fork) with this backend
    workers, services = partial(worker_main, open_bus=open_local_bus), partial(standalone_main, open_bus=open_local_bus)
    try:
        return Arbiter(config, workers, services, args.log_level, reload_config).run()
    except OSError as e:
        print(f"lapps: cannot start: {e}", file=sys.stderr)
        return 1


def version_parser() -> argparse.ArgumentParser:
    return new_parser("lapps version", "Print the version of LAppS and exit (the same as --version).",
                      ["lapps version", "lapps --version"])


def version_main(argv: list[str]) -> int:
    """`lapps version`: the version, as `--version` prints it."""
    version_parser().parse_args(argv)
    print(VERSION_TEXT)
    return 0


def _status(argv: list[str]) -> int:
    from .commands.status import status_main   # urllib and the admin table: only when asked for
    return status_main(argv)


def _migrate(argv: list[str]) -> int:
    from .commands.migrate import migrate_main
    return migrate_main(argv)


def _deploy(argv: list[str]) -> int:
    from .commands.deploy import deploy_main
    return deploy_main(argv)


# name -> (entry, one line for `lapps --help`)
SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "serve": (serve_main, "run the server (the default when no subcommand is given)"),
    "check-config": (check_config_main, "validate the configuration and exit (0 good, 1 bad)"),
    "print-config": (print_config_main, "print the merged configuration as TOML"),
    "status": (_status, "per-worker counters of a running server, from its admin endpoint"),
    "migrate-config": (_migrate, "write a lapps.toml from the original LAppS's ws.json and lapps.json"),
    "deploy": (_deploy, "deploy a service archive into a running server (hot deploy)"),
    "version": (version_main, "print the version"),
}


def usage() -> str:
    """`lapps --help`: the subcommands, then how to get each one's flags."""
    width = max(map(len, SUBCOMMANDS))
    rows = "\n".join(f"  {name.ljust(width)}  {line}" for name, (_, line) in SUBCOMMANDS.items())
    return (f"usage: lapps [SUBCOMMAND] [options]\n\n"
            f"LAppS: a WebSocket application server for Lua services ({VERSION_TEXT}).\n\n"
            f"subcommands:\n{rows}\n\n"
            "Without a subcommand, the options are serve's (`lapps --workers 2` serves).\n"
            "`lapps SUBCOMMAND --help` says what each does, with its options and an example.\n\n"
            "examples:\n  lapps --config etc/lapps.toml\n  lapps check-config --config etc/lapps.toml\n"
            "  lapps migrate-config ws.json lapps.json -o lapps.toml\n  lapps status\n"
            "  lapps deploy chat.tar.gz\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(usage())
        return 0
    if argv[:1] == ["--version"]:
        print(VERSION_TEXT)
        return 0
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]][0](argv[1:])
    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())

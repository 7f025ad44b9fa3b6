"""`lapps check-config` and `lapps print-config`: the config the server would run with.

`read_config` is also what `lapps serve` loads at start and again on SIGHUP, so the checks
that these commands run are exactly the server's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..config import Config, ConfigError, default_config_path, load_config, to_toml
from ..lua.modules import STANDALONE_ONLY
from ..tls import needs_tls, server_context
from . import add_config_flags, new_parser, overrides


def config_problems(config: Config) -> list[str]:
    """Rules about what a service may use where, checked before anything starts.

    The blocking modules would stall every connection of a worker, so they are refused for
    reactive services instead of letting one `nap:sleep` freeze a worker.
    """
    problems = []
    for name, svc in config.services.items():
        for blocking in STANDALONE_ONLY:
            if blocking in svc.preload and not svc.standalone:
                problems.append(f"services.{name}.preload: {blocking} is for standalone services only "
                                "(it blocks, which would stall the worker)")
    return problems


def read_config(args: argparse.Namespace) -> Config:
    """The config as the flags say (file, then flags over it). Raises ConfigError."""
    config = load_config(args.config or default_config_path(), overrides(args))
    if needs_tls(config.server):
        server_context(config.server.tls)   # the files load, or the start stops here
    problems = config_problems(config)
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def check_parser() -> argparse.ArgumentParser:
    p = new_parser("lapps check-config",
                   "Load and validate the configuration as the server would (every key, the service "
                   "scripts, the TLS files) and exit: 0 when it is good, 1 with the dotted key, the "
                   "value and what was expected when it is not.",
                   ["lapps check-config --config /etc/lapps/lapps.toml",
                    "lapps --config etc/lapps.toml --check-config   (the older flag form)"])
    add_config_flags(p)
    return p


def print_parser() -> argparse.ArgumentParser:
    p = new_parser("lapps print-config",
                   "Print the merged configuration (built-in defaults, then the file, then the flags) "
                   "as TOML, with every path absolute, and exit.",
                   ["lapps print-config --config etc/lapps.toml > merged.toml",
                    "lapps print-config --workers 2 | grep '^workers'"])
    add_config_flags(p)
    return p


def _with_config(args: argparse.Namespace, show: Callable[[Config], str]) -> int:
    """0 and `show(config)` on stdout, or 1 and the config error on stderr."""
    try:
        config = read_config(args)
    except ConfigError as e:
        print(f"lapps: config error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(show(config))
    return 0


def check_config(args: argparse.Namespace) -> int:
    """0 and "config OK (PATH)", or 1 and the error."""
    return _with_config(args, lambda c: f"lapps: config OK ({c.source or 'built-in defaults'})\n")


def print_config(args: argparse.Namespace) -> int:
    """0 and the merged TOML on stdout, or 1 and the error."""
    return _with_config(args, to_toml)


def check_config_main(argv: list[str]) -> int:
    return check_config(check_parser().parse_args(argv))


def print_config_main(argv: list[str]) -> int:
    return print_config(print_parser().parse_args(argv))

"""Logging: one line per event, with the time, the process name and the level."""

from __future__ import annotations

import logging
import sys


def configure(process_name: str, level: str | int = "INFO") -> None:
    """(Re)configure the root logger for this process; called again after fork.

    The process name (`master`, `worker 3`) is baked into the format so that lines from
    every process of the server, which share stderr, say where they come from.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s.%(msecs)03d lapps[{process_name}] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)

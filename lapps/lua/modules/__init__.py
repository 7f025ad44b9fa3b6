"""Built-in Lua host modules (DESIGN §3 "Built-in modules"), and the one table of them.

Each `install_*` function builds one module table in a given runtime and returns it, from
its Lua half in a `.lua` file beside it. Every module accepts both call styles of the
original LAppS (`m.f(x)` and `m:f(x)`): a tiny Lua wrapper drops the module when it comes as
the first argument, so the check costs no Python call. Each `.lua` file of the host starts
with an empty line, as the Python strings they were did: a chunk's name and line numbers
(what an error or a traceback shows) stay what they were.

`HOST_MODULES` is the one place that says which modules exist, who installs them and who
may have them: the config's `preload` check (lapps/config.py), `lapps check-config`'s rule
for reactive services (lapps/commands/config.py), the migration from the original's config
(lapps/migrate.py) and the service loader (lapps/lua/service.py) all read it. Adding a
module is a file here and a line in the table. The table names its installers by
"module:function" and imports them only when a service installs one, so reading it needs
no lupa (the master, which never runs Lua, reads the config).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PRELOAD, ALWAYS, OFFERED = "preload", "always", "offered"


class NotOffered(Exception):
    """The hosting process does not offer what a module needs (mqr in a deploy check)."""


@dataclass(frozen=True)
class HostModule:
    """One host module: the global it becomes, its installer, and where it is allowed.

    `when`: PRELOAD (a service names it in `preload`), ALWAYS (every service has it) or
    OFFERED (the host installs it wherever it offers what it needs: bcast's channels, the
    worker's send path of ws).
    `needs` names the installer's arguments among what the host offers (`lua`, `values`,
    `directory`, `tls`, `mqr`, `bcast`, `ws`). `reactive` False: the module blocks, so only
    standalone services may have it (a reactive one would stall its worker).
    """

    name: str
    installer: str
    needs: tuple[str, ...]
    when: str = PRELOAD
    reactive: bool = True

    def install(self, offered: Mapping[str, Any]) -> Any:
        """Build the module in the runtime `offered["lua"]`; NotOffered when a need is missing."""
        args = [offered.get(need) for need in self.needs]
        if any(a is None for a in args):
            raise NotOffered(f"{self.name} is not available here")
        module, function = self.installer.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)(*args)


HOST_MODULES: dict[str, HostModule] = {m.name: m for m in (
    HostModule("nljson", "nljson:install_nljson", ("lua", "values", "directory"), when=ALWAYS),
    HostModule("nap", "basic:install_nap", ("lua",), reactive=False),
    HostModule("time", "basic:install_time", ("lua",)),
    HostModule("murmur", "basic:install_murmur", ("lua",)),
    HostModule("mqr", "mqr:install_mqr", ("lua", "values", "mqr")),
    HostModule("cws", "cws:install_cws", ("lua", "values", "tls"), reactive=False),
    HostModule("bcast", "bcast:install_bcast", ("lua", "values", "bcast"), when=OFFERED),
    HostModule("ws", "ws:install_ws", ("lua", "values", "ws"), when=OFFERED),
)}

PRELOAD_MODULES = tuple(m.name for m in HOST_MODULES.values() if m.when == PRELOAD)
"""Optional Lua host modules a service may ask for in `preload`."""

STANDALONE_ONLY = tuple(m.name for m in HOST_MODULES.values() if not m.reactive)
"""Modules that block: refused for reactive services."""

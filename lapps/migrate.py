"""The original LAppS's configuration (ws.json + lapps.json + per-service descriptors) as a
lapps.toml: `lapps migrate-config` (the CLI wrapper, which reads the files, is
lapps/commands/migrate.py).

Pure: dicts in, TOML text out. What the converter must know about the disk (which service
scripts and TLS files exist) comes in as arguments, so that the TOML it writes is one that
`lapps check-config` accepts as it is. Every key of the original that is dropped or changed
gets a comment in the output that says why; a key this server has no equivalent for is said
to be unsupported, never mapped onto an invented key. The keys are those of the original's
include/Config.h (its defaults) and of its examples' configs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .lua.modules import HOST_MODULES, PRELOAD, PRELOAD_MODULES, STANDALONE_ONLY

# Modules every service here has as a global without asking (lapps/lua/modules HOST_MODULES).
ALWAYS_THERE = tuple(m.name for m in HOST_MODULES.values() if m.when != PRELOAD)
# The original's tls_*_version numbers as TLS versions, as read here: 1 = 1.0 ... 4 = 1.3 (its
# default is 3, its examples say 4). This server offers 1.2 and 1.3 only.
TLS_VERSIONS = {1: "1.0", 2: "1.1", 3: "1.2", 4: "1.3"}
# ws.json auto_fragment = true: a frame size is needed here (the original's was its own).
AUTO_FRAGMENT_SIZE = 65536


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class MigrationError(Exception):
    """The input is not an original LAppS configuration (e.g. not a JSON object)."""


@dataclass
class _Table:
    """One [section] of the output: `key = value  # note` lines and comment lines, in order."""
    name: str
    lines: list[str] = field(default_factory=list)
    left_out: str = ""   # why the whole section is written as comments ("" = it is not)

    def set(self, key: str, value: Any, note: str | None = None) -> None:
        line = f"{key} = {toml_value(value)}"
        self.lines.append(f"{line}  # {note}" if note else line)

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")


@dataclass
class Migration:
    """The TOML text and the warnings worth printing to the operator (unknown modules/keys)."""
    text: str
    warnings: list[str]


def toml_value(value: Any) -> str:
    """A JSON value as TOML (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)   # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise MigrationError(f"cannot write {value!r} in TOML")


def _key(key: str) -> str:
    """A TOML key: bare when it may be, else quoted."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _shown(value: Any) -> str:
    return json.dumps(value)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MigrationError(f"{what}: expected a JSON object, got {_shown(value)}")
    return value


class _Migrator:
    def __init__(self, ws_name: str, lapps_name: str) -> None:
        self.ws_name = ws_name
        self.lapps_name = lapps_name
        self.warnings: list[str] = []

    # ---- ws.json ------------------------------------------------------------------------

    def server(self, ws: dict[str, Any], lapps: dict[str, Any], services_dir: str,
               present_files: frozenset[str]) -> list[_Table]:
        w = self.ws_name
        server, tls, acl = _Table("server"), _Table("server.tls"), _Table("server.acl")
        workers, balancer = _Table("workers"), _Table("balancer")
        for key in ("ip", "port", "listeners"):
            if key in ws:
                server.set(key, ws[key])
        wk = _object(ws.get("workers"), f"{w} workers")
        if "workers" in wk:
            server.set("workers", wk["workers"], f"{w} workers.workers")
        if "max_connections" in wk:
            server.set("max_connections", wk["max_connections"], f"{w} workers.max_connections (per worker)")
        directories = _object(lapps.get("directories"), f"{self.lapps_name} directories")
        server.set("services_dir", services_dir,
                   f"{self.lapps_name} directories.applications = {_shown(directories.get('applications'))}"
                   " below LAPPS_HOME: where <name>/<name>.lua live")
        for key in ("app_conf_dir", "tmp", "workdir", "deploy"):
            if key in directories:
                server.note(f"dropped: {self.lapps_name} directories.{key} = {_shown(directories[key])}: "
                            + {"app_conf_dir": "this file is the whole configuration",
                               "tmp": "this server keeps no temporary files",
                               "workdir": "paths here are relative to this file's folder",
                               "deploy": "set [server] deploy_dir to a folder for hot deploy "
                                         "(lapps deploy; tar.gz archives, not the original's .lar)"}[key])
        if "lapps_config_auto_save" in ws:
            server.note(f"dropped: {w} lapps_config_auto_save = {_shown(ws['lapps_config_auto_save'])}: "
                        "this server never writes its configuration")
        if "connection_weight" in ws:
            balancer.set("connection_weight", ws["connection_weight"], f"{w} connection_weight")
        for key in ("max_poll_events", "input_buffer_size"):
            if key in wk:
                workers.set(key, wk[key], f"{w} workers.{key}")
        if "auto_fragment" in wk:
            frag = wk["auto_fragment"]
            if frag is True:
                workers.set("auto_fragment", AUTO_FRAGMENT_SIZE,
                            f"{w} workers.auto_fragment = true; here it is the frame size in bytes (0 = off)")
            elif frag in (False, None, 0):
                workers.note(f"{w} workers.auto_fragment = {_shown(frag)}: off, the default here")
            else:
                workers.set("auto_fragment", frag, f"{w} workers.auto_fragment")
        if "max_poll_wait_ms" in wk:
            workers.note(f"dropped: {w} workers.max_poll_wait_ms = {_shown(wk['max_poll_wait_ms'])}: "
                         "the loop here waits until its next timer, not a fixed time")
        if "max_inbounds_skip" in wk:
            workers.note(f"dropped: {w} workers.max_inbounds_skip = {_shown(wk['max_inbounds_skip'])}: "
                         "not supported here (every readable connection is read each turn)")
        for key in sorted(set(wk) - {"workers", "max_connections", "max_poll_events", "input_buffer_size",
                                     "auto_fragment", "max_poll_wait_ms", "max_inbounds_skip"}):
            self.unknown(workers, f"{w} workers.{key}", wk[key])
        self.acl(acl, _object(ws.get("acl"), f"{w} acl"), f"{w} acl")
        self.tls(tls, ws, present_files)
        known = {"ip", "port", "listeners", "workers", "lapps_config_auto_save", "connection_weight", "acl",
                 "tls", "tls_certificates", "tls_server_version", "tls_client_version"}
        for key in sorted(set(ws) - known):
            self.unknown(server, f"{w} {key}", ws[key])
        return [server, tls, acl, workers, balancer]

    def tls(self, table: _Table, ws: dict[str, Any], present_files: frozenset[str]) -> None:
        w = self.ws_name
        certs = _object(ws.get("tls_certificates"), f"{w} tls_certificates")
        enabled = ws.get("tls") is True
        missing = [certs[k] for k in ("cert", "key") if k in certs and certs[k] not in present_files]
        if enabled and missing:
            table.set("enabled", False, f"{w} tls = true, but {' and '.join(missing)} not found: TLS left off; "
                                        "put the files there and set true")
        elif "tls" in ws:
            table.set("enabled", enabled, f"{w} tls")
        for key in ("cert", "key"):
            if key in certs:
                table.set(key, certs[key], f"{w} tls_certificates.{key}")
        if "ca" in certs:
            table.note(f"dropped: {w} tls_certificates.ca = {_shown(certs['ca'])}: the server asks clients "
                       "for no certificate, so it needs no CA")
        if "tls_server_version" in ws:
            v = ws["tls_server_version"]
            version = TLS_VERSIONS.get(v)
            if version in ("1.2", "1.3"):
                table.set("min_version", version, f"{w} tls_server_version = {_shown(v)} (TLS {version})")
            else:
                table.set("min_version", "1.2", f"{w} tls_server_version = {_shown(v)}"
                          f"{f' (TLS {version})' if version else ''}: TLS 1.2 is the oldest offered here")
        if "tls_client_version" in ws:
            table.note(f"dropped: {w} tls_client_version = {_shown(ws['tls_client_version'])}: the cws "
                       "client here uses Python's TLS defaults (1.2 and later)")

    # ---- lapps.json ---------------------------------------------------------------------

    def service(self, name: str, entry: dict[str, Any], descriptor: dict[str, Any] | None,
                has_script: bool, configured: set[str]) -> _Table:
        where = f"{self.lapps_name} services.{name}"
        table = _Table(f"services.{name}")
        merged = {k: v for k, v in entry.items() if v is not None or k == "preload"}
        if descriptor:
            dname = f"{name}.json"
            for key, value in descriptor.items():
                if key == "name":
                    continue
                if key not in merged:
                    merged[key] = value
                    table.note(f"{key}: from {dname} ({self.lapps_name} does not set it)")
                elif merged[key] != value:
                    table.note(f"{key}: {dname} says {_shown(value)}; {self.lapps_name}'s "
                               f"{_shown(merged[key])} is kept")
        standalone = merged.get("standalone")
        if "internal" in merged:
            internal = merged.pop("internal")
            if standalone is None:
                standalone = internal
                table.set("standalone", bool(internal), f"internal = {_shown(internal)}: the original's older "
                                                        "name of standalone")
            else:
                table.note(f"dropped: internal = {_shown(internal)}: standalone says it")
        if "standalone" in merged:
            table.set("standalone", merged["standalone"])
        standalone = bool(standalone)
        for key in ("protocol", "request_target", "max_inbound_message_size", "auto_start"):
            if key in merged:
                table.set(key, merged[key])
        if "instances" in merged:
            table.set("instances", merged["instances"], None if standalone else
                      "reactive services run one instance per IO worker here (server.workers)")
        if "acl" in merged:
            acl = _object(merged["acl"], f"{where}.acl")
            table.set("acl", {k: acl[k] for k in ("policy", "exclude") if k in acl})
            for key in sorted(set(acl) - {"policy", "exclude"}):
                self.unknown(table, f"{where}.acl.{key}", acl[key])
        if "preload" in merged:
            self.preload(table, merged["preload"], standalone, f"{where}.preload")
        if "depends" in merged:
            deps = merged["depends"] if isinstance(merged["depends"], list) else [merged["depends"]]
            kept = [d for d in deps if d in configured]
            table.set("depends", kept)
            for d in deps:
                if d not in configured:
                    table.note(f"depends: dropped {_shown(d)}: not a service of this configuration")
        if "proto_alias" in merged:
            alias = merged["proto_alias"]
            table.set("subprotocols", alias if isinstance(alias, list) else [alias],
                      f"proto_alias = {_shown(alias)}: the Sec-WebSocket-Protocol value(s) it answers to")
        if "extra_headers" in merged:
            table.set("extra_headers", _object(merged["extra_headers"], f"{where}.extra_headers"))
        known = {"standalone", "protocol", "request_target", "max_inbound_message_size", "auto_start",
                 "instances", "acl", "preload", "depends", "proto_alias", "extra_headers", "name"}
        for key in sorted(set(merged) - known):
            self.unknown(table, f"{where}.{key}", merged[key])
        if not has_script:
            table.left_out = (f"no script <services_dir>/{name}/{name}.lua here (the configuration "
                              "refuses a service without one)")
        return table

    def preload(self, table: _Table, value: Any, standalone: bool, where: str) -> None:
        if value is None:
            table.note("preload = null: no module asked for (the original's way to say [])")
            return
        names = value if isinstance(value, list) else [value]
        kept = []
        for m in names:
            if m in ALWAYS_THERE:
                table.note(f"preload: dropped {_shown(m)}: a global of every service here")
            elif m in STANDALONE_ONLY and not standalone:
                table.note(f"preload: dropped {_shown(m)}: it blocks, so only standalone services have it here")
            elif m in PRELOAD_MODULES:
                kept.append(m)
            else:
                table.note(f"preload: dropped {_shown(m)}: no such module here (modules: "
                           f"{', '.join(PRELOAD_MODULES)}); a service that uses it fails where it does")
                self.warnings.append(f"{where}: {m} is not a module of this server (dropped)")
        table.set("preload", kept)

    def acl(self, table: _Table, acl: dict[str, Any], where: str) -> None:
        for key in ("policy", "exclude"):
            if key in acl:
                table.set(key, acl[key])
        for key in sorted(set(acl) - {"policy", "exclude"}):
            self.unknown(table, f"{where}.{key}", acl[key])

    def unknown(self, table: _Table, where: str, value: Any) -> None:
        table.note(f"dropped: {where} = {_shown(value)}: not a setting of this server")
        self.warnings.append(f"{where}: not a setting of this server (dropped)")


def migrate(ws: Any, lapps: Any, descriptors: Mapping[str, Any] | None = None, *,
            services_dir: str, scripts: frozenset[str] | set[str] = frozenset(),
            present_files: frozenset[str] | set[str] = frozenset(),
            ws_name: str = "ws.json", lapps_name: str = "lapps.json") -> Migration:
    """The lapps.toml equivalent of the original's `ws` (ws.json) and `lapps` (lapps.json).

    `descriptors`: service name -> its `<name>/<name>.json`; lapps.json's keys win and each
    key taken from a descriptor, or overruled, is noted. `scripts`: the services whose
    `<services_dir>/<name>/<name>.lua` exists (the others are written commented out, since
    the config refuses a service without its script). `present_files`: the TLS files that
    exist (TLS is left off, with a comment, when one is missing).
    """
    ws = _object(ws, ws_name)
    lapps = _object(lapps, lapps_name)
    m = _Migrator(ws_name, lapps_name)
    tables = m.server(ws, lapps, services_dir, frozenset(present_files))
    services = _object(lapps.get("services"), f"{lapps_name} services")
    descriptors = descriptors or {}
    configured = {n for n in services if n in scripts}
    for name, entry in services.items():
        tables.append(m.service(name, _object(entry, f"{lapps_name} services.{name}"),
                                descriptors.get(name), name in scripts, configured))
    for key in sorted(set(lapps) - {"directories", "services"}):
        m.unknown(tables[0], f"{lapps_name} {key}", lapps[key])
    out = [f"# LAppS configuration migrated by `lapps migrate-config` (LAppS {__version__})",
           f"# from {ws_name} and {lapps_name}. Keys the original had that are dropped or changed",
           "# carry a comment saying why; everything not set here is this server's default",
           "# (etc/lapps.toml documents every key)."]
    for table in tables:
        if table.left_out:
            out += ["", f"# [{table.name}] left out: {table.left_out}; the section as it would be:",
                    "#", f"# [{table.name}]", *(f"# {line}" for line in table.lines)]
        elif table.lines:
            out += ["", f"[{table.name}]", *table.lines]
    return Migration("\n".join(out) + "\n", m.warnings)


def service_toml(name: str, descriptor: Any, configured: set[str] | frozenset[str] = frozenset()) -> Migration:
    """The `[services.NAME]` table of a deployed service, from its `<name>.json` descriptor
    alone (lapps/deploy.py writes it as the service folder's service.toml), by the rules
    `migrate` uses for lapps.json entries. `configured`: the services the server has, for
    `depends`."""
    m = _Migrator("ws.json", f"{name}.json")
    table = m.service(name, _object(descriptor, f"{name}.json"), None, True, set(configured) | {name})
    out = [f"# [services.{name}] written by `lapps deploy` from {name}/{name}.json (LAppS {__version__}).",
           "# Keys of the descriptor that are dropped or changed carry a comment saying why.",
           "", f"[{table.name}]", *table.lines]
    return Migration("\n".join(out) + "\n", m.warnings)


"""LAppS configuration: one TOML file merged key by key over built-in defaults (DESIGN §2).

Call `load_config` once, in the composition root (the CLI), and pass the frozen `Config` (or the
section a part needs) down; nothing else reads files or the environment for settings. Every check
runs at load time so a bad value stops the server before it binds a port or forks a worker, and every
`ConfigError` names the dotted key, the value and what was expected.

Validation is driven by the schema tables below (`_SERVER`, `_LIMITS`, … `_SERVICE`): each key has a
default and a check that returns the normalised value (the checks, `_Field`, `_Section` and the
merging: lapps/config_schema.py). Only what spans keys (unique request targets, `depends`, script
files, TLS files) is written out by hand.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import toml

from .config_schema import (_Field, _Invalid, _Section, _boolean, _choice, _cidr, _connect_to, _defaults,
                            _directory, _headers, _integer, _ip, _join, _list, _merge, _number,
                            _optional_dir, _path, _redis_url, _resolve_paths, _show, _string, _target,
                            _token)
from .lua.modules import PRELOAD_MODULES   # the host modules' table: names only, no lupa


class ConfigError(Exception):
    """The configuration cannot be used. The message says where (dotted key or file) and why."""


# --- the configuration, as the rest of the server sees it -------------------------------------


@dataclass(frozen=True)
class TLSConfig:
    """`[server.tls]`: serve wss:// with this certificate and key when enabled."""
    enabled: bool
    cert: str
    key: str
    min_version: str


@dataclass(frozen=True)
class ACLConfig:
    """An access list: `policy` ("allow"/"deny") applies to every peer not in `exclude` (CIDRs)."""
    policy: str
    exclude: tuple[str, ...]


@dataclass(frozen=True)
class EndpointConfig:
    """One more listening address (`[[server.endpoints]]`), beside `[server] ip`/`port`:
    a way to serve ws:// and wss:// from one server. `tls` uses the `[server.tls]` files."""
    ip: str
    port: int
    tls: bool


@dataclass(frozen=True)
class ServerConfig:
    """`[server]`: listening socket, process counts, timeouts (seconds), the services folder and
    `lua_path`, the folders `require` searches after a service's own (pure-Lua rocks)."""
    ip: str
    port: int
    listeners: int
    workers: int
    max_connections: int
    shutdown_timeout: float
    drain_timeout: float
    services_dir: str
    tls: TLSConfig
    acl: ACLConfig
    endpoints: tuple[EndpointConfig, ...] = ()
    access_log: bool = False
    static_dir: str = ""   # "" = off; else plain GET/HEAD on the WebSocket port serve files from it
    deploy_dir: str = ""   # "" = off; else service archives dropped here are deployed (hot deploy)
    lua_path: tuple[str, ...] = ()
    log_repeat_interval: float = 10.0


@dataclass(frozen=True)
class LimitsConfig:
    """`[limits]`: per-connection bounds; sizes in bytes, times in seconds (0 = off where noted)."""
    max_handshake_size: int
    max_headers: int
    handshake_timeout: float
    idle_timeout: float
    ping_interval: float
    ping_timeout: float
    close_timeout: float
    max_outbound_buffer: int
    max_connections_per_ip: int
    max_messages_per_second: float = 0.0
    max_static_file_size: int = 1048576


@dataclass(frozen=True)
class WorkersConfig:
    """`[workers]`: event loop tuning. `heartbeat_timeout`: seconds without a heartbeat before the
    master kills a worker whose loop is stuck."""
    max_poll_events: int
    input_buffer_size: int
    auto_fragment: int
    heartbeat_timeout: float = 10.0


@dataclass(frozen=True)
class BalancerConfig:
    """`[balancer]`: how much a worker's connections and backlog count when placing a connection."""
    connection_weight: float
    backlog_weight: float


@dataclass(frozen=True)
class AdminConfig:
    """`[admin]`: the plain-HTTP metrics/health endpoint; port 0 turns it off."""
    ip: str
    port: int


@dataclass(frozen=True)
class ClusterConfig:
    """`[cluster]`: optional Redis bus for bcast/mqr across nodes; "" = single node."""
    redis_url: str


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """`[services.NAME]`: one Lua service. `directory` and `script` derive from services_dir and the
    name and are never read from the file. Keyword-only: too many fields to pass by position."""
    name: str
    protocol: str
    request_target: str
    max_inbound_message_size: int
    preload: tuple[str, ...]
    acl: ACLConfig
    extra_headers: dict[str, str]
    subprotocols: tuple[str, ...]
    origins: tuple[str, ...]
    permessage_deflate: bool
    lapps_max_errors: int
    standalone: bool
    instances: int
    depends: tuple[str, ...]
    auto_start: bool
    allow_exec: bool = False
    max_memory: int = 67108864
    instruction_budget: int = 100_000_000
    slow_consumer: str = "close"
    cws_verify: bool = True                 # cws: verify wss:// servers' certificates
    cws_ca_file: str = ""                   # cws: a PEM CA bundle instead of the system's
    cws_connect_to: dict[str, str] = field(default_factory=dict)   # cws: "host:port" -> "addr:port"
    directory: str
    script: str
    lua_path: tuple[str, ...] = ()   # [server] lua_path, for require after `directory`


@dataclass(frozen=True)
class Config:
    """The whole merged configuration. `source` (the file read, if any) is left out of equality so
    a config re-read from `to_toml` output equals the original."""
    server: ServerConfig
    limits: LimitsConfig
    workers: WorkersConfig
    balancer: BalancerConfig
    admin: AdminConfig
    cluster: ClusterConfig
    services: dict[str, ServiceConfig]
    source: str | None = field(default=None, compare=False)


# --- the one value check that makes a dataclass of this module (the others: config_schema.py) ---


def _endpoints(v: Any) -> tuple[EndpointConfig, ...]:
    """[[server.endpoints]]: each a table with `port`, and optional `ip` (default: server.ip,
    filled in later) and `tls` (default false)."""
    if not isinstance(v, (list, tuple)):
        raise _Invalid("an array of tables ([[server.endpoints]])")
    out = []
    for i, table in enumerate(v):
        if isinstance(table, EndpointConfig):
            out.append(table)
            continue
        if not isinstance(table, dict):
            raise _Invalid("a table with port, and optional ip and tls", f"[{i}]", table, inner=True)
        for key in table:
            if key not in ("ip", "port", "tls"):
                raise _Invalid("one of ip, port, tls", f"[{i}].{key}", key, inner=True)
        checks = (("port", _integer(1, 65535), None), ("ip", _ip, ""), ("tls", _boolean, False))
        values = {}
        for key, check, default in checks:
            if key not in table:
                if default is None:
                    raise _Invalid("a port", f"[{i}].port", None, inner=True)
                values[key] = default
                continue
            try:
                values[key] = check(table[key])
            except _Invalid as e:
                raise _Invalid(e.expected, f"[{i}].{key}", table[key], inner=True) from None
        out.append(EndpointConfig(**values))
    return tuple(out)


# --- the schema: key -> default and check (lapps/config_schema.py) -----------------------------


_ACL = _Section(ACLConfig, {
    "policy": _Field("allow", _choice("allow", "deny")),
    "exclude": _Field([], _list(_cidr, "a list of IP addresses or CIDR blocks")),
})
_TLS = _Section(TLSConfig, {
    "enabled": _Field(False, _boolean),
    "cert": _Field("ssl/localhost.crt", _path, path=True),
    "key": _Field("ssl/localhost.key", _path, path=True),
    "min_version": _Field("1.2", _choice("1.2", "1.3")),
})
_SERVER = _Section(ServerConfig, {
    "ip": _Field("0.0.0.0", _ip),
    "port": _Field(5083, _integer(1, 65535)),
    "listeners": _Field(2, _integer(1)),
    "workers": _Field(4, _integer(1)),
    "max_connections": _Field(10000, _integer(1)),
    "shutdown_timeout": _Field(10, _number()),
    "drain_timeout": _Field(30, _number()),
    "services_dir": _Field("../services", _path, path=True),
    "tls": _TLS,
    "acl": _ACL,
    "endpoints": _Field([], _endpoints),
    "access_log": _Field(False, _boolean),   # one log line per upgrade attempt
    "static_dir": _Field("", _optional_dir, path=True),   # files for plain GETs (the demo page); "" = off
    "deploy_dir": _Field("", _optional_dir, path=True),   # hot deploy: archives dropped here; "" = off
    "lua_path": _Field([], _list(_directory, "a list of directories"), path=True),  # for require
    "log_repeat_interval": _Field(10, _number(positive=True)),   # lapps.logs.RepeatLimiter
})
_LIMITS = _Section(LimitsConfig, {
    "max_handshake_size": _Field(8192, _integer(1)),
    "max_headers": _Field(100, _integer(1)),
    "handshake_timeout": _Field(10, _number()),
    "idle_timeout": _Field(0, _number()),
    "ping_interval": _Field(30, _number()),
    "ping_timeout": _Field(30, _number()),
    "close_timeout": _Field(5, _number()),
    "max_outbound_buffer": _Field(4194304, _integer(1)),
    "max_connections_per_ip": _Field(0, _integer(0)),
    "max_messages_per_second": _Field(0, _number()),   # per connection; 0 = no limit
    "max_static_file_size": _Field(1048576, _integer(1)),   # bytes; a bigger static file answers 404
})
_WORKERS = _Section(WorkersConfig, {
    "max_poll_events": _Field(512, _integer(1)),
    "input_buffer_size": _Field(65536, _integer(1)),
    "auto_fragment": _Field(0, _integer(0)),
    "heartbeat_timeout": _Field(10, _number(positive=True)),
})
_ROOT = _Section(Config, {
    "server": _SERVER,
    "limits": _LIMITS,
    "workers": _WORKERS,
    "balancer": _Section(BalancerConfig, {
        "connection_weight": _Field(1.0, _number()),
        "backlog_weight": _Field(0.01, _number()),
    }),
    "admin": _Section(AdminConfig, {
        "ip": _Field("127.0.0.1", _ip),
        "port": _Field(5084, _integer(0, 65535)),
    }),
    "cluster": _Section(ClusterConfig, {"redis_url": _Field("", _redis_url)}),
})  # `services` is checked by _build_services: its keys are the operator's service names.
_SERVICE = _Section(ServiceConfig, {
    "protocol": _Field("raw", _choice("raw", "lapps", fold=True)),
    "request_target": _Field(None, _target),  # None: "/<name>", filled in by _build_services
    "max_inbound_message_size": _Field(16777216, _integer(1)),
    "preload": _Field([], _list(_choice(*PRELOAD_MODULES), "a list of module names")),
    "acl": _ACL,
    "extra_headers": _Field({}, _headers),
    "subprotocols": _Field([], _list(_token, "a list of subprotocol names")),
    "origins": _Field([], _list(_string, "a list of Origin values")),
    "permessage_deflate": _Field(False, _boolean),
    "lapps_max_errors": _Field(3, _integer(0)),
    "standalone": _Field(False, _boolean),
    "instances": _Field(1, _integer(1)),
    "depends": _Field([], _list(_string, "a list of service names")),
    "auto_start": _Field(True, _boolean),
    "allow_exec": _Field(False, _boolean),
    "max_memory": _Field(67108864, _integer(0)),            # bytes per Lua state; 0 = no cap
    "instruction_budget": _Field(100_000_000, _integer(0)),  # VM instructions per call; 0 = none
    "slow_consumer": _Field("close", _choice("close", "drop")),  # outbound buffer full: 1008, or drop broadcasts
    "cws_verify": _Field(True, _boolean),
    "cws_ca_file": _Field("", _string, path=True),
    "cws_connect_to": _Field({}, _connect_to),
})
_SERVICE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # a folder, a file and a Lua module name


# --- building ---------------------------------------------------------------------------------


def _build(section: _Section, tree: Any, prefix: str, **extra: Any) -> Any:
    """Check `tree` (already merged over defaults) against `section` and make its dataclass."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix}: expected a table, got {_show(tree)}")
    for key in tree:
        if key not in section.keys:
            known = ", ".join([*section.keys, "services"] if section is _ROOT else section.keys)
            raise ConfigError(f"{_join(prefix, key)}: unknown key (expected one of: {known})")
    values: dict[str, Any] = {}
    for key, spec in section.keys.items():
        dotted = _join(prefix, key)
        if isinstance(spec, _Section):
            values[key] = _build(spec, tree[key], dotted)
            continue
        try:
            values[key] = spec.check(tree[key])
        except _Invalid as e:
            shown = e.value if e.inner else tree[key]
            raise ConfigError(f"{dotted}{e.sub}: expected {e.expected}, got {_show(shown)}") from None
    return section.cls(**values, **extra)


def _build_services(raw: Any, services_dir: str, lua_path: tuple[str, ...]) -> dict[str, ServiceConfig]:
    """Each [services.NAME] over the service defaults; the script must exist now, not at fork."""
    if not isinstance(raw, dict):
        raise ConfigError(f"services: expected a table of services, got {_show(raw)}")
    services: dict[str, ServiceConfig] = {}
    for name, table in raw.items():
        key = f"services.{name}"
        if not _SERVICE_NAME.match(name):
            raise ConfigError(f"{key}: expected a service name of letters, digits and _, got {_show(name)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table, got {_show(table)}")
        merged = _merge(_defaults(_SERVICE), table)
        if merged["request_target"] is None:
            merged["request_target"] = "/" + name
        directory = os.path.join(services_dir, name)
        script = os.path.join(directory, f"{name}.lua")
        services[name] = _build(_SERVICE, merged, key, name=name, directory=directory, script=script,
                                lua_path=lua_path)
        if not os.path.isfile(script):
            raise ConfigError(f"{key}: script not found: {script}")
        ca_file = services[name].cws_ca_file
        if ca_file and not os.path.isfile(ca_file):
            raise ConfigError(f"{key}.cws_ca_file: file not found: {ca_file}")
    _check_links(services)
    return services


def _check_links(services: dict[str, ServiceConfig]) -> None:
    """What spans services: one reactive service per request target; `depends` names services and
    has no cycle (the start order must exist)."""
    owner: dict[str, str] = {}
    for name, svc in services.items():
        if svc.standalone:
            continue
        if svc.request_target in owner:
            other = owner[svc.request_target]
            raise ConfigError(f"services.{name}.request_target: expected a path no other service uses, "
                              f"got {_show(svc.request_target)} (services.{other} has it)")
        owner[svc.request_target] = name
    for name, svc in services.items():
        for i, dep in enumerate(svc.depends):
            if dep not in services:
                raise ConfigError(f"services.{name}.depends[{i}]: expected the name of a configured "
                                  f"service, got {_show(dep)}")

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " -> ".join(trail + (name,))
            raise ConfigError(f"services.{name}.depends: expected no dependency cycle, got {cycle}")
        for dep in services[name].depends:
            visit(dep, trail + (name,))

    for name in services:
        visit(name, ())


def _check_server(config: Config) -> None:
    """Checks that span keys of [server] and [admin]."""
    if config.cluster.redis_url:   # the key stands for the scale-out bus to come (DESIGN §8)
        raise ConfigError(f"cluster.redis_url: the Redis bus is not built yet (this server is one node), "
                          f"expected \"\", got {_show(config.cluster.redis_url)}")
    tls = config.server.tls
    srv = config.server
    if any(not e.ip for e in srv.endpoints):   # an endpoint without ip listens where [server] does
        endpoints = tuple(dataclasses.replace(e, ip=e.ip or srv.ip) for e in srv.endpoints)
        object.__setattr__(srv, "endpoints", endpoints)
    seen = {(srv.ip, srv.port)}
    for i, e in enumerate(srv.endpoints):
        if (e.ip, e.port) in seen:
            raise ConfigError(f"server.endpoints[{i}]: {e.ip}:{e.port} is already a listening address")
        seen.add((e.ip, e.port))
    if tls.enabled or any(e.tls for e in srv.endpoints):
        for key, path in (("cert", tls.cert), ("key", tls.key)):
            if not os.path.isfile(path):
                raise ConfigError(f"server.tls.{key}: file not found: {path}")
    if config.admin.port and config.admin.port == config.server.port:
        raise ConfigError(f"admin.port: expected a port other than server.port, got {config.admin.port}")


def _read(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file: {e}") from None
    try:
        # the standard library's strict TOML 1.0 parser; `toml` (lenient, with known parse
        # bugs) is only used to write --print-config
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def _nest(overrides: Mapping[str, object]) -> dict[str, Any]:
    """{"server.port": 9000} -> {"server": {"port": 9000}}. None means "flag not given": skipped."""
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        if not leaf or not all(parents):
            raise ConfigError(f"{dotted}: expected a dotted key like server.port")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: overrides {part}, which another override sets to a value")
        node[leaf] = value
    return tree


# --- public API --------------------------------------------------------------------------------


def load_config(path: str | None = None, overrides: Mapping[str, object] | None = None) -> Config:
    """Defaults, then the file at `path` (if any), then `overrides` (dotted keys: the CLI flags).

    Relative paths in the file (and in the defaults, which stand in for it) are relative to the
    file's folder; with no file, and in `overrides`, to the current directory. Raises ConfigError.
    """
    cwd = os.getcwd()
    base = os.path.dirname(os.path.abspath(path)) if path is not None else cwd
    tree = _defaults(_ROOT)
    _resolve_paths(_ROOT, tree, base)
    tree["services"] = {}
    layers: list[tuple[dict[str, Any], str]] = []
    if path is not None:
        path = os.path.abspath(path)
        layers.append((_read(path), base))
    if overrides:
        layers.append((_nest(overrides), cwd))
    for layer, layer_base in layers:
        _resolve_paths(_ROOT, layer, layer_base)
        services_layer = layer.get("services")
        for table in services_layer.values() if isinstance(services_layer, dict) else ():
            if isinstance(table, dict):   # a service's own paths (cws_ca_file), likewise
                _resolve_paths(_SERVICE, table, layer_base)
        tree = _merge(tree, layer)
    services_table = tree.pop("services")
    config = _build(_ROOT, tree, "", services={}, source=path)
    if config.server.deploy_dir and isinstance(services_table, dict):
        # deployed services (lapps/deploy.py); a table of the same name in the file wins
        deployed = deployed_services(config.server.services_dir)
        services_table = {**services_table, **{n: t for n, t in deployed.items() if n not in services_table}}
    services = _build_services(services_table, config.server.services_dir, config.server.lua_path)
    config = dataclasses.replace(config, services=services)
    _check_server(config)
    return config


def deployed_services(services_dir: str) -> dict[str, Any]:
    """The `[services.NAME]` tables of the deployed services: each `<services_dir>/NAME/
    service.toml` (written by lapps/deploy.py), its relative paths relative to that folder."""
    found: dict[str, Any] = {}
    try:
        names = sorted(os.listdir(services_dir))
    except OSError:
        return found
    for name in names:
        path = os.path.join(services_dir, name, "service.toml")
        if not os.path.isfile(path):
            continue
        tree = _read(path)
        table = tree.get("services", {}).get(name) if isinstance(tree.get("services"), dict) else None
        if not isinstance(table, dict) or set(tree) != {"services"} or set(tree["services"]) != {name}:
            raise ConfigError(f"{path}: expected only a [services.{name}] table")
        _resolve_paths(_SERVICE, table, os.path.dirname(path))
        found[name] = table
    return found


def default_config_path() -> str | None:
    """The file to load when --config is absent: $LAPPS_CONFIG if set and non-empty, else the
    repo's shipped etc/lapps.toml if it exists, else None (built-in defaults only)."""
    env = os.environ.get("LAPPS_CONFIG")
    if env:
        return env
    shipped = Path(__file__).resolve().parent.parent / "etc" / "lapps.toml"
    return str(shipped) if shipped.is_file() else None


def to_toml(config: Config) -> str:
    """The merged config as TOML (for --print-config). Paths are absolute, so the text means the
    same wherever it is saved, and load_config of it gives an equal Config."""
    tables = {name: dataclasses.asdict(getattr(config, name)) for name in _ROOT.keys}
    # the `toml` encoder writes a tuple of tables as a list of their keys: give it a list
    tables["server"]["endpoints"] = list(tables["server"]["endpoints"])
    tables["server"]["lua_path"] = list(tables["server"]["lua_path"])
    for name, svc in config.services.items():
        table = dataclasses.asdict(svc)
        for derived in ("name", "directory", "script", "lua_path"):
            del table[derived]
        tables[f"services.{name}"] = table
    # One dumps() per section keeps [server.tls] next to [server], as in etc/lapps.toml.
    parts = [f"# LAppS configuration, merged from {config.source or 'built-in defaults'}\n"]
    for dotted, table in tables.items():
        head, _, name = dotted.partition(".")
        parts.append(toml.dumps({head: {name: table}} if name else {head: table}))
    return "\n".join(parts)

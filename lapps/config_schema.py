"""The vocabulary lapps/config.py writes its schema tables in: value checks, `_Field` and
`_Section`, and the merging of layers over defaults.

Private to lapps.config (its names keep their underscore: nothing else should use them); apart
from it so that config.py holds what an operator's key is (the dataclasses, the tables, the
checks that span keys, load_config) and this module how any key is checked and merged. A check
returns the normalised value or raises `_Invalid`; config.py's `_build` turns that into the
`ConfigError` that names the dotted key.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# --- value checks: each returns the normalised value or raises _Invalid --------------------------

Check = Callable[[Any], Any]


class _Invalid(Exception):
    """Raised by a check with what it expected; `sub` and `value` point inside a list or table."""

    def __init__(self, expected: str, sub: str = "", value: Any = None, inner: bool = False):
        super().__init__(expected)
        self.expected, self.sub, self.value, self.inner = expected, sub, value, inner


def _rule(what: str, ok: Callable[[Any], bool], convert: Callable[[Any], Any] = lambda v: v) -> Check:
    def check(v: Any) -> Any:
        if not ok(v):
            raise _Invalid(what)
        return convert(v)
    return check


def _parses(parse: Callable[[str], object], v: Any) -> bool:
    try:
        return isinstance(v, str) and parse(v) is not None
    except ValueError:
        return False


def _is_int(v: Any) -> bool:
    """A TOML integer: 64-bit, and not a bool (bool is an int in Python; `port = true` is a mistake)."""
    return isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63


def _integer(lo: int, hi: int | None = None) -> Check:
    what = f"an integer from {lo} to {hi}" if hi is not None else (
        "a non-negative integer" if lo == 0 else "a positive integer" if lo == 1 else f"an integer >= {lo}")
    return _rule(what, lambda v: _is_int(v) and v >= lo and (hi is None or v <= hi))


def _number(positive: bool = False) -> Check:
    def ok(v: Any) -> bool:
        return (_is_int(v) or isinstance(v, float)) and math.isfinite(v) and (v > 0 if positive else v >= 0)
    return _rule("a positive number" if positive else "a non-negative number", ok, float)


def _choice(*options: str, fold: bool = False) -> Check:
    what = "one of " + ", ".join(json.dumps(o) for o in options) + (" (any case)" if fold else "")
    norm: Callable[[str], str] = str.lower if fold else str
    return _rule(what, lambda v: isinstance(v, str) and norm(v) in options, norm)


def _list(item: Check, what: str) -> Check:
    def check(v: Any) -> tuple:
        if not isinstance(v, (list, tuple)):
            raise _Invalid(what)
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x))
            except _Invalid as e:
                raise _Invalid(e.expected, f"[{i}]", x, inner=True) from None
        return tuple(out)
    return check


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 7230 token: header names, subprotocols
def _text(v: Any) -> bool:
    """Config strings are printable: no control characters to smuggle into a log line or an HTTP
    head, and none that the `toml` encoder mangles (it writes them as Python escapes)."""
    return isinstance(v, str) and v.isprintable()


_boolean = _rule("true or false", lambda v: isinstance(v, bool))
_string = _rule("a string of printable characters", _text)
_ip = _rule("an IPv4 or IPv6 address", lambda v: _parses(ipaddress.ip_address, v))
_cidr = _rule("an IP address or CIDR block",
              lambda v: _parses(lambda x: ipaddress.ip_network(x, strict=False), v))
_path = _rule("a non-empty path of printable characters", lambda v: _text(v) and v != "")
_optional_dir = _rule('"" (off) or an existing folder',
                    lambda v: _text(v) and (v == "" or os.path.isdir(v)))
_directory = _rule("an existing directory", lambda v: _text(v) and v != "" and os.path.isdir(v))
_token = _rule("an HTTP token (letters, digits, !#$%&'*+.^_`|~-)",
               lambda v: isinstance(v, str) and bool(_TOKEN.match(v)))
_target = _rule("a path starting with / (no spaces, query or fragment)",  # visible ASCII but ? and #
                lambda v: isinstance(v, str) and bool(re.match(r"/[\x21-\x22\x24-\x3e\x40-\x7e]*\Z", v)))
_redis_url = _rule('"" or a redis://, rediss:// or unix:// URL',
                   lambda v: _text(v) and (v == "" or bool(re.match(r"(redis|rediss|unix)://", v))))


_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\Z")


def _connect_to(v: Any) -> dict[str, str]:
    """cws_connect_to: "host:port" = "address:port" pairs (curl's --connect-to): a wss:// URI
    keeps its host for TLS and the Host header while the TCP connection goes elsewhere."""
    if not isinstance(v, dict):
        raise _Invalid('a table of "host:port" = "address:port"')
    for key, value in v.items():
        for what, text in (("key", key), ("value", value)):
            m = _HOST_PORT.match(text) if isinstance(text, str) else None
            if m is None or not 1 <= int(m.group(2)) <= 65535:
                raise _Invalid(f'"host:port" as the {what} (port 1-65535)', f".{key}", text, inner=True)
    return dict(v)


def _headers(v: Any) -> dict[str, str]:
    """extra_headers: the handshake writes Upgrade, Connection and Sec-WebSocket-* itself; a service
    must not forge those, nor smuggle a line break into the 101 response (see _text)."""
    if not isinstance(v, dict):
        raise _Invalid("a table of header names to string values")
    for name, value in v.items():
        low = name.lower()
        if not _TOKEN.match(name) or low in ("upgrade", "connection") or low.startswith("sec-websocket-"):
            what = "a header name other than Upgrade, Connection, Sec-WebSocket-*"
            raise _Invalid(what, f".{name}", name, inner=True)
        if not _text(value):
            raise _Invalid("a string of printable characters", f".{name}", value, inner=True)
    return dict(v)


# --- the schema's building blocks: key -> default and check; nested sections are _Section ----


@dataclass(frozen=True)
class _Field:
    default: Any
    check: Check
    path: bool = False  # a relative value is relative to the folder of the file that sets it


@dataclass(frozen=True)
class _Section:
    cls: type
    keys: dict[str, _Field | _Section]


# --- merging layers over the defaults --------------------------------------------------------


def _show(value: Any) -> str:
    """A value as the operator wrote it in TOML (true, "text"), not as Python prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _defaults(section: _Section) -> dict[str, Any]:
    """A fresh tree of the defaults (deep copies: layers are merged into it, never into the schema)."""
    return {k: _defaults(s) if isinstance(s, _Section) else copy.deepcopy(s.default)
            for k, s in section.keys.items()}


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `overlay` laid over it key by key: tables merge, other values replace."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_paths(section: _Section, layer: dict[str, Any], base: str) -> None:
    """Make the path values one layer sets absolute against `base`, that layer's own folder, so
    a path means the same whichever file (or command line) it came from. Mutates `layer`."""
    for key, spec in section.keys.items():
        value = layer.get(key)
        if isinstance(spec, _Section) and isinstance(value, dict):
            _resolve_paths(spec, value, base)
        elif isinstance(spec, _Field) and spec.path and isinstance(value, str) and value:
            layer[key] = os.path.abspath(os.path.join(base, value))
        elif isinstance(spec, _Field) and spec.path and isinstance(value, list):
            layer[key] = [os.path.abspath(os.path.join(base, v)) if isinstance(v, str) and v else v
                          for v in value]

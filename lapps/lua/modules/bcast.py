"""The `bcast` module: broadcast channels, for LAppS-protocol and standalone services.

The Lua half (bcast.lua) only drops the module when it comes as the first argument
(`bcast:send(...)` and `bcast.send(...)` alike); the hosting process (an IO worker or a
service process) owns the channels and gives its side as a `Bcast`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BCAST_MODULE = (Path(__file__).parent / "bcast.lua").read_bytes()


@dataclass
class Bcast:
    """The hosting process's side of the `bcast` module; each returns True or (False, why)."""

    create: Callable[[int], Any]
    subscribe: Callable[[int, int], Any]
    unsubscribe: Callable[[int, int], Any]
    publish: Callable[[int, object], Any]   # channel, message as Python data


def _int_arg(value: Any, what: str) -> int:
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is not int:
        raise TypeError(f"{what} must be an integer")
    return value


def install_bcast(lua: Any, values: Any, bcast: Bcast) -> Any:
    """Build the `bcast` module table in `lua` (`values`: the runtime's LuaValues)."""
    def create(channel: Any = None) -> Any:
        try:
            return bcast.create(_int_arg(channel, "bcast channel"))
        except TypeError as e:
            return False, str(e).encode()

    def subscribe(channel: Any = None, handler: Any = None) -> Any:
        try:
            return bcast.subscribe(_int_arg(channel, "bcast channel"), _int_arg(handler, "handler"))
        except TypeError as e:
            return False, str(e).encode()

    def unsubscribe(channel: Any = None, handler: Any = None) -> Any:
        try:
            return bcast.unsubscribe(_int_arg(channel, "bcast channel"), _int_arg(handler, "handler"))
        except TypeError as e:
            return False, str(e).encode()

    def send(channel: Any = None, message: Any = None) -> Any:
        try:
            return bcast.publish(_int_arg(channel, "bcast channel"), values.from_lua(message))
        except (TypeError, ValueError) as e:
            return False, str(e).encode()

    return lua.execute(_BCAST_MODULE, create, subscribe, unsubscribe, send)

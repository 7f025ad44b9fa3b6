"""The `mqr` module: named message queues of CBOR-encoded messages (through `preload`).

The Lua half (mqr.lua) makes the queue objects (`mqr.create(name)` -> `q:post`, `q:recv`,
`q:try_recv`); the hosting process gives the queues as an `Mqr`. `recv` blocks, so an IO
worker gives none and a reactive service gets an error that says to use `try_recv`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from ...ipc.bus import BusError

_MQR_MODULE = (Path(__file__).parent / "mqr.lua").read_bytes()


@dataclass
class Mqr:
    """The hosting process's side of `mqr`: queues of CBOR-encoded messages."""

    post: Callable[[str, bytes], None]
    try_recv: Callable[[str], bytes | None]
    recv: Callable[[str], bytes | None] | None   # None where blocking is not allowed (workers)


def install_mqr(lua: Any, values: Any, mqr: Mqr) -> Any:
    """Build the `mqr` module table in `lua` (`values`: the runtime's LuaValues)."""
    def post(name: bytes, message: Any = None) -> Any:
        try:
            mqr.post(name.decode(), cbor2.dumps(values.from_lua(message)))
            return True
        except (TypeError, ValueError, BusError) as e:
            return False, str(e).encode()

    def decoded(payload: bytes | None) -> Any:
        return None if payload is None else values.to_lua(cbor2.loads(payload))

    def try_recv(name: bytes) -> Any:
        try:
            return decoded(mqr.try_recv(name.decode()))
        except (BusError, TimeoutError) as e:
            return None, str(e).encode()

    def recv(name: bytes) -> Any:
        if mqr.recv is None:
            raise RuntimeError("mqr recv() blocks: reactive services use try_recv()")
        return decoded(mqr.recv(name.decode()))

    return lua.execute(_MQR_MODULE, post, recv, try_recv)

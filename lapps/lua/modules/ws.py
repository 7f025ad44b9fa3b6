"""The `ws` module: a reactive service's sends and closes, and the host's onMessage dispatchers.

Its Lua half (ws.lua, where the kept-reply format is written down) keeps the replies to the
connection whose message is being handled and hands them back with onMessage's return;
like every host module it accepts both call styles of the original (`ws:send(...)` and
`ws.send(...)`), the check running in Lua where it costs next to nothing. `ws:send(h,
table)` is the LAppS-protocol form. Only a reactive host (an IO worker) offers a `WsHost`:
standalone services have no `ws`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Its chunk name is still its text's first (empty) line, as when it was a Python string.
_WS_MODULE = (Path(__file__).parent / "ws.lua").read_bytes()


@dataclass
class WsHost:
    """The worker's side of `ws`, and what the installer hands back to the worker.

    `send(handler, opcode, bytes)`, `send_message(handler, python_data)` and
    `close(handler, code, reason)` implement `ws:send`/`ws:close`, each returning True or
    (False, errmsg_bytes) as the original LAppS API does; `deferred(handler, kept...)`
    takes the kept replies that must go out before a direct send. `install_ws` fills in the
    three Lua functions the worker calls instead of onMessage (ws.lua): `dispatcher`,
    `request_dispatcher` and `take_kept`.
    """

    send: Callable[..., Any]
    send_message: Callable[[Any, Any], Any]
    close: Callable[..., Any]
    deferred: Callable[..., None]
    max_outbound: int
    lapps: bool                      # a LAppS-protocol service: kept answers {cid 0, status 1}
    dispatcher: Any = None
    request_dispatcher: Any = None
    take_kept: Any = None


def reply_sender(values: Any, send_message: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """The Python end of ws.lua's `py_reply`: the pieces of a {cid, status, result}
    table back into the dict `values.from_lua` would have made of the whole table."""
    leaf = values.leaf_from_lua

    def send_reply(handler: Any, cid: Any, status: Any, *result: Any) -> Any:
        message: dict[str, Any] = {"result": [leaf(v) for v in result]}
        if cid is not None:
            message["cid"] = leaf(cid)
        if status is not None:
            message["status"] = leaf(status)
        return send_message(handler, message)
    return send_reply


def install_ws(lua: Any, values: Any, host: WsHost) -> Any:
    """Build the `ws` module table in `lua` (`values`: the runtime's LuaValues); the
    dispatchers it comes with go into `host`."""
    send_message = host.send_message

    def send_table(handler: Any, table: Any) -> Any:
        try:
            message = values.from_lua(table)
        except ValueError as e:
            return False, str(e).encode()
        return send_message(handler, message)

    ws, host.dispatcher, host.take_kept, host.request_dispatcher = lua.execute(
        _WS_MODULE, host.send, send_table, host.close, host.deferred, host.max_outbound,
        reply_sender(values, send_message), host.lapps)
    return ws

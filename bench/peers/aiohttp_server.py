"""Peer echo server: aiohttp's WebSocketResponse, for bench/run_peers.py.

    python aiohttp_server.py PORT [--uvloop]

Listens on 127.0.0.1:PORT, any path; every message goes back as it came (text as text,
binary as binary). No compression, no heartbeat, no access log; the default limit (4 MiB
messages) is far above the 277-byte messages of the benchmark. Prints nothing but errors.
"""

import asyncio
import logging
import sys

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=4 << 20)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def main() -> None:
    args = sys.argv[1:]
    use_uvloop = "--uvloop" in args
    args = [a for a in args if a != "--uvloop"]
    if len(args) != 1:
        sys.exit("usage: aiohttp_server.py PORT [--uvloop]")
    logging.getLogger("aiohttp").setLevel(logging.ERROR)
    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    loop = None
    if use_uvloop:
        import uvloop
        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=int(args[0]), access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()

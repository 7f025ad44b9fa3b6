"""Peer echo server: python-websockets (asyncio implementation), for bench/run_peers.py.

    python websockets_server.py PORT [--uvloop]

Listens on 127.0.0.1:PORT, any path; every message goes back as it came (text as text,
binary as binary). No compression, no keepalive pings, logging off; the default limits
(1 MiB messages) are far above the 277-byte messages of the benchmark. Prints nothing but
errors. `--uvloop` runs the same code on uvloop instead of asyncio's own loop.
"""

import asyncio
import logging
import signal
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:          # str for text, bytes for binary: sent back the same way
        await ws.send(message)


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):   # stop cleanly (exit 0), closing connections with 1001
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(echo, "127.0.0.1", port, compression=None, ping_interval=None, max_size=1 << 20):
        await stop


if __name__ == "__main__":
    args = sys.argv[1:]
    use_uvloop = "--uvloop" in args
    args = [a for a in args if a != "--uvloop"]
    if len(args) != 1:
        sys.exit("usage: websockets_server.py PORT [--uvloop]")
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    logging.getLogger("websockets").propagate = False
    if use_uvloop:
        import uvloop
        uvloop.run(main(int(args[0])))
    else:
        asyncio.run(main(int(args[0])))

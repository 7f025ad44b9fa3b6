"""Peer echo server: picows (Cython WebSocket framing) on uvloop, for bench/run_peers.py.

    python picows_server.py PORT

Listens on 127.0.0.1:PORT, any path; every frame goes back as it came (text as text,
binary as binary, continuation frames with their FIN bit, so fragmented messages come back
fragmented the same way), pings are answered by picows itself, a close is answered and the
connection dropped. picows works on frames and does not check that text is valid UTF-8
(the other servers do). Prints nothing but errors.
"""

import asyncio
import logging
import signal
import sys

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if t in DATA:
            transport.send(t, frame.get_payload_as_memoryview(), frame.fin)
        elif t == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):   # stop cleanly (exit 0)
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port,
                                    max_frame_size=16 << 20, websocket_handshake_timeout=30)
    await stop
    server.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: picows_server.py PORT")
    logging.getLogger("picows").setLevel(logging.ERROR)
    uvloop.run(main(int(sys.argv[1])))

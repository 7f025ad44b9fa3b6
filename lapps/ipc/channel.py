"""The master→worker channel: accepted sockets passed with SCM_RIGHTS.

One `SOCK_SEQPACKET` socketpair per worker. Each packet carries one descriptor and a
tiny header, and a packet is delivered whole or not at all, so several listener threads
may send on the same channel without a header ever parting from its descriptor.
"""

from __future__ import annotations

import socket
import struct

# Exit status of a worker that cannot boot (a broken service, EX_CONFIG): the master
# halts the server on it instead of respawning forever (gunicorn's WORKER_BOOT_ERROR).
EXIT_BOOT_FAILURE = 78

_HEADER = struct.Struct("!HB")   # listener id, TLS flag (room for wss:// listeners)


def make_channel() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end). The master end is non-blocking: a full channel means a
    stuck worker, and a listener must not hang on it."""
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master_end.setblocking(False)
    return master_end, worker_end


def send_socket(channel: socket.socket, sock: socket.socket, listener_id: int, tls: bool = False) -> None:
    """Pass `sock` to the worker; raises BlockingIOError when the channel is full."""
    socket.send_fds(channel, [_HEADER.pack(listener_id, tls)], [sock.fileno()])


def receive_sockets(channel: socket.socket) -> tuple[list[tuple[socket.socket, bool]], bool]:
    """The socket waiting on the worker's end with its TLS flag, and whether the master has
    gone (EOF). One packet per call: each carries one descriptor and its own header.

    Raises BlockingIOError when nothing is waiting.
    """
    msg, fds, _flags, _addr = socket.recv_fds(channel, _HEADER.size, 4)
    if not msg and not fds:
        return [], True
    tls = len(msg) == _HEADER.size and bool(_HEADER.unpack(msg)[1])
    return [(socket.socket(fileno=fd), tls) for fd in fds], False

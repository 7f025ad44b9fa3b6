"""The master↔worker channel: accepted sockets passed with SCM_RIGHTS, and small reports.

One `SOCK_SEQPACKET` socketpair per worker. Each packet carries one descriptor and a
tiny header, and a packet is delivered whole or not at all, so several listener threads
may send on the same channel without a header ever parting from its descriptor.

Besides sockets: master → worker, "service NAME was deployed" (a packet without a
descriptor: the worker reads the service's table from the config file again); worker →
master, the addresses whose connections ended and the outcome of a deploy.
"""

from __future__ import annotations

import socket
import struct

# Exit status of a worker that cannot boot (a broken service, EX_CONFIG): the master
# halts the server on it instead of respawning forever (gunicorn's WORKER_BOOT_ERROR).
EXIT_BOOT_FAILURE = 78

_HEADER = struct.Struct("!HB")   # listener id, TLS flag; the peer's address follows
_CLOSED = b"C"                     # worker -> master: connections from these addresses ended
_DEPLOYED = b"D"                   # worker -> master: a deploy's outcome; master -> worker: deploy NAME
_CHANNEL_BUFFER = 4 * 1024 * 1024  # bytes of sockets in flight to one worker


def make_channel() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end). The master end is non-blocking: a full channel means a
    stuck worker, and a listener must not hang on it."""
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master_end.setblocking(False)
    # each passed socket holds about 1 KiB of the send buffer until the worker takes it: the
    # default buffer (about 280 sockets) is one busy moment of a worker at thousands of
    # accepts per second
    try:
        master_end.setsockopt(socket.SOL_SOCKET, 32, _CHANNEL_BUFFER)   # SO_SNDBUFFORCE (root)
    except OSError:
        master_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _CHANNEL_BUFFER)
    return master_end, worker_end


def send_socket(channel: socket.socket, sock: socket.socket, listener_id: int, tls: bool, peer: str) -> None:
    """Pass `sock` to the worker; raises BlockingIOError when the channel is full."""
    socket.send_fds(channel, [_HEADER.pack(listener_id, tls) + peer.encode()], [sock.fileno()])


def send_deploy(channel: socket.socket, name: str) -> bool:
    """Tell a worker that service `name` was deployed; False when the channel is full."""
    try:
        channel.send(_DEPLOYED + name.encode())
        return True
    except BlockingIOError:
        return False


def receive_sockets(channel: socket.socket) -> tuple[list[tuple[socket.socket, bool, str]], bool, str | None]:
    """The socket waiting on the worker's end with its TLS flag and peer address, whether
    the master has gone (EOF), and the name of a deployed service when the packet is that
    instead. One packet per call: each carries one descriptor and its own header.

    Raises BlockingIOError when nothing is waiting.
    """
    msg, fds, _flags, _addr = socket.recv_fds(channel, 256, 4)
    if not msg and not fds:
        return [], True, None
    if not fds and msg[:1] == _DEPLOYED:
        return [], False, msg[1:].decode("utf-8", "replace")
    tls = len(msg) >= _HEADER.size and bool(_HEADER.unpack_from(msg)[1])
    peer = msg[_HEADER.size:].decode("ascii", "replace")
    return [(socket.socket(fileno=fd), tls, peer) for fd in fds], False, None


def report_closed(channel: socket.socket, peers: list[str]) -> bool:
    """Tell the master these connections ended (for max_connections_per_ip); False when
    the channel is full and the report must be tried again later."""
    try:
        channel.send(_CLOSED + "\n".join(peers).encode())
        return True
    except BlockingIOError:
        return False


def report_deploy(channel: socket.socket, name: str, error: str | None) -> None:
    """Tell the master how the deploy of `name` went in this worker (None: it serves it)."""
    body = name.encode() + b"\0" + (error or "").encode("utf-8", "replace")[:4000]
    channel.send(_DEPLOYED + (b"0" if error else b"1") + body)


def read_report(channel: socket.socket) -> tuple[str, object] | None:
    """One report of a worker: ("closed", [addresses whose connections ended]) or
    ("deployed", (service name, error or None)); None at EOF (the worker exited).

    Raises BlockingIOError when nothing is waiting.
    """
    data = channel.recv(65536)
    if not data:
        return None
    if data[:1] == _DEPLOYED:
        name, _, error = data[2:].partition(b"\0")
        return "deployed", (name.decode("utf-8", "replace"),
                            None if data[1:2] == b"1" else error.decode("utf-8", "replace"))
    if data[:1] != _CLOSED:
        return "closed", []
    return "closed", data[1:].decode("ascii", "replace").split("\n") if len(data) > 1 else []

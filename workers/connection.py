"""One accepted socket as the worker sees it: its protocol object and bookkeeping."""

from __future__ import annotations

import socket
from typing import Any

from lapps.ws.protocol import ServerProtocol


class Connection:
    """A client socket owned by this worker, from the TCP accept to the TCP close.

    Plain slots, no methods with logic: the worker loop reads and writes these fields
    directly because attribute access is the cheapest thing the hot path can do.
    """

    __slots__ = ("sock", "fd", "peer", "proto", "handler", "service",
                 "dirty", "want_write", "lingering", "opened", "backlog", "channels", "lapps_errors",
                 "tls", "tls_pending", "mask", "paused", "last_read", "last_message", "seen",
                 "ping_sent", "ping_every", "tokens", "tokens_at", "handshaking", "adopted_at")

    def __init__(self, sock: socket.socket, peer: str, proto: ServerProtocol) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer                  # the client's IP address, for ACLs and logs
        self.proto = proto
        self.handler = 0                  # the id Lua sees; set when the upgrade succeeds
        self.service: Any = None          # the hosting `Route` once upgraded
        self.dirty = False                # in the worker's list of sockets to flush
        self.want_write = False           # registered for EPOLLOUT (the kernel buffer was full)
        self.lingering = False            # our side is shut; reading until EOF, then close
        self.opened = False               # onDisconnect is owed when it ends
        self.backlog = 0                  # bytes of `proto.out` counted in the slot's backlog
        self.channels: set[int] | None = None  # bcast channels it is subscribed to
        self.lapps_errors = 0             # bad LAppS messages so far (lapps_max_errors)
        self.tls = False                  # an SSLSocket (wss://)
        self.tls_pending = False          # its TLS handshake is not done yet
        self.mask = 0                     # the epoll events it is registered for
        self.paused = False               # reading stopped: its outbound buffer is over high water
        self.last_read = 0.0              # loop time of the last bytes read (keepalive)
        self.last_message = 0.0           # loop time the sweep last saw a new message (idle)
        self.seen = 0                     # proto.messages at that sweep
        self.ping_sent = 0.0              # loop time of the ping awaiting an answer, 0: none
        self.ping_every = 0.0             # its ping interval, jittered so pings do not bunch
        self.tokens = 0.0                 # message-rate bucket (max_messages_per_second)
        self.tokens_at = 0.0
        self.handshaking = False          # counted in the slot's handshakes in progress
        self.adopted_at = 0.0             # loop time it was taken from the master (access log)

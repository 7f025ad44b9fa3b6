"""The IO worker: one process, one epoll loop, no threads.

The loop only moves bytes: read → feed the connection's `ServerProtocol` → hand complete
messages to the Lua service → send what the protocol queued. Everything slow or rare
(timers, the shared-memory slot, signals) happens once per loop turn, not per message.
"""

from __future__ import annotations

import heapq
import logging
import os
import select
import socket
import ssl
import time
from collections.abc import Callable

from lapps import SERVER_HEADER
from lapps.config import Config
from lapps.ipc.channel import receive_sockets, report_closed, report_deploy
from lapps.ipc.interface import Bus
from lapps.ipc.slots import SlotWriter, WorkerState, service_indexes
from lapps.logs import RepeatLimiter
from lapps.tls import needs_tls, server_context
from lapps.ws.constants import CloseCode
from lapps.ws.protocol import EV_CLOSED, EV_HTTP, EV_REQUEST, ServerProtocol, State

from .connection import Connection
from .faults import Barrier, FaultyProtocol, faulty_socket, injected_site
from .host import ServiceHost
from .keepalive import Keepalive
from .static import StaticFiles
from .stopping import Stopping

_IN = select.EPOLLIN | select.EPOLLRDHUP
_OUT = select.EPOLLOUT
# timer kinds: what to check about a connection when its deadline passes
_T_HANDSHAKE, _T_CLOSE, _T_LINGER = 0, 1, 2
_SWEEP_EVERY = 1.0       # seconds between keepalive/idle sweeps
_REPORT_BATCH = 2000     # ended connections per report to the master
_HANDLER_SEQ_BITS = 30   # handler = pid << 30 | sequence: unique in the server, < 2**53 for Lua


class IOWorker(Keepalive, Stopping):
    """Owns the client sockets handed over by the master and runs their services."""

    def __init__(self, index: int, config: Config, channel: socket.socket, slot: SlotWriter,
                 wakeup: socket.socket, log: logging.Logger, bus: Bus) -> None:
        self.index = index
        self.config = config
        self.channel = channel
        self.slot = slot
        slot.services = service_indexes(config.services)   # per-service connection counters
        self.wakeup = wakeup
        self.log = log
        lim = config.limits
        self.max_handshake_size = lim.max_handshake_size
        self.max_headers = lim.max_headers
        self.handshake_timeout = lim.handshake_timeout
        self.close_timeout = lim.close_timeout
        self.buf = bytearray(config.workers.input_buffer_size)
        self.view = memoryview(self.buf)
        self.ep = select.epoll()
        self.conns: dict[int, Connection] = {}          # fd → connection
        self.by_handler: dict[int, Connection] = {}     # handler → open connection
        self.dirty: list[Connection] = []               # connections with bytes to send
        self.timers: list[tuple[float, int, int, Connection]] = []
        self.timer_seq = 0
        self.aux: dict[int, Callable[[], None]] = {}      # fd → handler, for non-client fds
        # warnings that can fire per message or connection: one line per key and interval
        self.repeats = RepeatLimiter(log, config.server.log_repeat_interval)
        self.barrier = Barrier(self.repeats, slot)
        self.fault_site = injected_site(log)            # '' unless a test set LAPPS_FAULT_INJECT
        self.protocol_class = FaultyProtocol if self.fault_site == "parser" else ServerProtocol
        self.host = ServiceHost(self, config, bus, self.fault_site)
        self.tls_context = server_context(config.server.tls) if needs_tls(config.server) else None
        self.handler_base = 0
        self.handler_seq = 0
        self.stopping = False
        self.stop_deadline = 0.0
        self.draining = False
        self.drain_deadline = 0.0
        self.drain_quiet = 0.0
        self.now = time.monotonic()                     # the loop turn's clock
        self.next_sweep = 0.0
        self.high_water = lim.max_outbound_buffer // 2  # stop reading from a peer this far behind
        self.ping_interval = lim.ping_interval
        self.ping_timeout = lim.ping_timeout
        self.idle_timeout = lim.idle_timeout
        self.per_ip_cap = lim.max_connections_per_ip
        self.access_log = config.server.access_log
        self.ended_peers: list[str] = []                # to report to the master (per-IP cap)
        static_dir = config.server.static_dir           # plain GET/HEAD answered from it, or None: 400
        self.static = StaticFiles(static_dir, lim.max_static_file_size, log) if static_dir else None

    # ------------------------------------------------------------------ boot

    def load_services(self) -> None:
        """One instance of every reactive service; raises ServiceBootError on failure."""
        self.host.load()

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Serve until stopped; returns the process exit status."""
        self.handler_base = os.getpid() << _HANDLER_SEQ_BITS
        self.slot.pid = os.getpid()
        ep = self.ep
        chan_fd = self.channel.fileno()
        wake_fd = self.wakeup.fileno()
        self.watch(chan_fd, self._take_connections)
        self.watch(wake_fd, self._handle_signals)
        self.host.bus.attach(self, self.host.deliver)   # the bus's fds, polled here
        aux = self.aux
        self.slot.state = WorkerState.RUNNING
        self.slot.publish(time.monotonic())
        conns = self.conns
        dirty = self.dirty
        read = self._read
        flush = self._flush
        max_events = self.config.workers.max_poll_events
        poll = ep.poll
        while True:
            timeout = 1.0
            if self.timers:
                timeout = min(timeout, max(0.0, self.timers[0][0] - time.monotonic()))
            try:
                ready = poll(timeout, max_events)
            except InterruptedError:
                ready = ()
            for fd, ev in ready:
                conn = conns.get(fd)
                if conn is not None:
                    # the fault barrier (DESIGN §8): whatever one connection's event raises
                    # costs that connection; a try is free until something raises
                    try:
                        if ev & _OUT:
                            flush(conn)
                            if ev == _OUT:
                                continue
                        read(conn)
                    except Exception as e:
                        self._fault(conn, e)
                else:
                    try:
                        aux[fd]()
                    except Exception as e:   # a bus link's or the channel's handler
                        self.barrier.handler_failed(fd, e)
            while dirty:
                conn = dirty.pop()
                conn.dirty = False
                try:
                    flush(conn)
                except Exception as e:   # the fault barrier, as above
                    self._fault(conn, e)
            self.now = now = time.monotonic()
            if self.timers and self.timers[0][0] <= now:
                self._run_timers(now)
            if now >= self.next_sweep:
                self.next_sweep = now + _SWEEP_EVERY
                self._sweep(now)
            if self.ended_peers:
                self._report_ended()
            if self.draining and not self.stopping and now >= self.drain_quiet and (
                    not conns or now >= self.drain_deadline):
                self._begin_stop()
            if self.stopping and (not conns or now >= self.stop_deadline):
                return self._finish_stop()
            self.slot.publish(now)

    def _read(self, conn: Connection) -> None:
        if conn.tls_pending:
            return self._tls_handshake(conn)
        try:
            n = conn.sock.recv_into(self.buf)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            return self._drop(conn)
        if not n:
            return self._eof(conn)
        if conn.lingering:
            return
        conn.last_read = self.now
        slot = self.slot
        slot.bytes_in += n
        proto = conn.proto
        proto.receive_data(self.view[:n])
        events = proto.events
        if events:
            for kind, value in events:
                if kind == EV_REQUEST:
                    self._route(conn, value)
                elif kind == EV_CLOSED:
                    self._closed(conn)
                elif kind == EV_HTTP:
                    self._serve_file(conn, value)
            events.clear()
        # a CLOSED connection may have nothing left to send and still needs the flush
        # pass, which shuts it down (the peer just answered our close, say)
        if (proto.out or proto.state == State.CLOSED) and not conn.dirty:
            conn.dirty = True
            self.dirty.append(conn)
        if conn.tls and conn.sock.pending() and conn.fd in self.conns:
            self._read(conn)   # decrypted bytes wait inside the SSL object: epoll cannot see them

    def _flush_dirty(self) -> None:
        """The flush pass of a loop turn: every connection with bytes to send."""
        dirty = self.dirty
        while dirty:
            conn = dirty.pop()
            conn.dirty = False
            try:
                self._flush(conn)
            except Exception as e:   # the fault barrier, as in run()
                self._fault(conn, e)

    def _fault(self, conn: Connection, error: Exception) -> None:
        """The fault barrier caught `error` on `conn`: log and count it, close that connection.

        A close frame 1011 goes out when the WebSocket was open (after what was queued before
        it), else the socket is closed; either way the protocol reads nothing more, so the
        same fault cannot fire twice on one read. Should closing fail too, the socket goes.
        """
        self.barrier.connection_failed(conn, error)
        if self.conns.get(conn.fd) is not conn:
            return
        try:
            conn.proto.events.clear()
            if conn.proto.abort(CloseCode.INTERNAL_ERROR, "internal error"):
                self._closed(conn)
                self.mark_dirty(conn)
                self._timer(self.close_timeout or 1.0, _T_LINGER, conn)   # however the peer reads
            else:
                self._drop(conn)
        except Exception:   # the connection is beyond repair: only its socket is left to close
            self._release(conn)

    def _flush(self, conn: Connection) -> None:
        if conn.tls_pending:
            return self._tls_handshake(conn)
        out = conn.proto.out
        if out:
            try:
                n = conn.sock.send(out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                n = 0
            except OSError:
                return self._drop(conn)
            self.slot.bytes_out += n
            if n and conn.want_write:
                # bytes that were stuck went out: the peer's window opened, so it reads
                # (slowly): as good as an answer to a ping
                conn.last_read = self.now
            del out[:n]
            if out:
                # the peer reads slower than we write: wait for EPOLLOUT, and past the high
                # water mark stop reading from it, so it cannot make us buffer more replies
                self.slot.backlog += len(out) - conn.backlog
                conn.backlog = len(out)
                conn.want_write = True
                if len(out) > self.high_water:
                    conn.paused = True
                self._set_interest(conn)
                return
            if conn.want_write:
                self.slot.backlog -= conn.backlog
                conn.backlog = 0
                conn.want_write = conn.paused = False
                self._set_interest(conn)
        if conn.proto.state == State.CLOSED and not conn.lingering:
            self._linger(conn)

    # ------------------------------------------------------------------ connection lifecycle

    def _take_connections(self) -> None:
        """Receive sockets the master passed over the channel (SCM_RIGHTS)."""
        while True:
            try:
                socks, master_gone, deployed = receive_sockets(self.channel)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log.error("channel to the master failed: %s; stopping", e)
                return self._begin_stop()
            if master_gone:
                self.log.warning("the master is gone; stopping")
                return self._begin_stop()
            if deployed is not None:
                self._deployed(deployed)
            for sock, tls, peer in socks:
                self.slot.taken += 1
                if self.stopping:
                    sock.close()
                    self._ended(peer)
                else:
                    self._adopt(sock, tls, peer)

    def _deployed(self, name: str) -> None:
        """The master installed service `name` anew: serve it (host.redeploy), report back."""
        if not self.stopping:
            try:
                report_deploy(self.channel, name, self.host.redeploy(name, self.config.source))
            except OSError as e:
                self.log.error("cannot report the deploy of %s to the master: %s", name, e)

    def _adopt(self, sock: socket.socket, tls: bool, peer: str) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError:
            sock.close()     # reset by the peer between accept and now
            self._ended(peer)
            return
        if self.fault_site == "flush" and not tls:
            sock = faulty_socket(sock)
        conn = Connection(sock, peer, self.protocol_class(self.max_handshake_size, self.max_headers,
                                                          headers=(SERVER_HEADER,),
                                                          plain_http=self.static is not None))
        conn.tls_pending = conn.tls = tls
        self.conns[conn.fd] = conn
        conn.mask = _IN
        conn.last_read = conn.adopted_at = self.now
        self.ep.register(conn.fd, _IN)
        self.slot.connections += 1
        self.slot.handshakes += 1
        conn.handshaking = True
        if self.handshake_timeout:   # a total: TLS and the upgrade together
            self._timer(self.handshake_timeout, _T_HANDSHAKE, conn)

    def _tls_handshake(self, conn: Connection) -> None:
        """One step of the non-blocking TLS handshake; the upgrade follows on the same socket.

        Plain HTTP or garbage on a TLS port fails here and costs only that socket.
        """
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self._want_write(conn, False)
        except ssl.SSLWantWriteError:
            return self._want_write(conn, True)
        except OSError as e:   # ssl.SSLError included
            self.log.debug("TLS handshake with %s failed: %s", conn.peer, e)
            return self._drop(conn)
        conn.tls_pending = False
        self._want_write(conn, False)
        self._read(conn)   # the client may have sent its upgrade request already

    def _want_write(self, conn: Connection, want: bool) -> None:
        conn.want_write = want
        self._set_interest(conn)

    def _set_interest(self, conn: Connection) -> None:
        """Register for what the connection waits on: input unless paused, output if behind."""
        mask = (0 if conn.paused else _IN) | (_OUT if conn.want_write else 0)
        if mask != conn.mask:
            conn.mask = mask
            self.ep.modify(conn.fd, mask)

    def _route(self, conn: Connection, req) -> None:
        """Mount an upgrade request on its service, or answer it with an HTTP error."""
        proto = conn.proto
        conn.handshaking = False
        self.slot.handshakes -= 1
        route = self.host.routes.get(req.path)
        if route is None:
            return proto.reject(404, f"no service at {req.path}")
        svc = route.config
        if not route.acl.allows(conn.peer):
            return proto.reject(403, "address not allowed")
        origin = req.get("origin")
        if svc.origins and origin is not None and origin not in svc.origins:
            return proto.reject(403, "origin not allowed")
        self.handler_seq += 1
        conn.handler = self.handler_base | self.handler_seq
        conn.service = route
        route.conns += 1
        conn.opened = True
        self.slot.upgraded(svc.name)
        self.by_handler[conn.handler] = conn
        proto.on_message = self.host.dispatcher(conn, route)
        # frames pipelined behind the request reach the service inside accept()
        proto.accept(svc.subprotocols, route.extra_headers, svc.max_inbound_message_size,
                     self.config.workers.auto_fragment, svc.permessage_deflate)
        if self.access_log:
            self._access(conn, 101)

    def _serve_file(self, conn: Connection, req) -> None:
        """A plain GET/HEAD (static_dir is set): the file, a 304 or a 404; then TCP closes."""
        conn.handshaking = False
        self.slot.handshakes -= 1
        response, status = self.static.answer(req)
        conn.proto.respond(response, status)

    def _access(self, conn: Connection, status: int | None) -> None:
        """The access log line of one upgrade attempt: peer, target, status, time taken."""
        req = conn.proto.request
        self.log.info("access %s %s %s %.1fms", conn.peer, req.target if req else "-",
                      status or "-", (time.monotonic() - conn.adopted_at) * 1000)

    def _closed(self, conn: Connection) -> None:
        """The WebSocket is over (close handshake done or failed): tell the service."""
        if conn.opened:
            conn.opened = False
            self.slot.ws_closed(conn.service.config.name, conn.proto.close_code, conn.proto.close_received)
            self.by_handler.pop(conn.handler, None)
            self.host.forget(conn)

    def _linger(self, conn: Connection) -> None:
        """Everything is sent: shut our side and read until the peer's EOF.

        Closing at once with unread input makes the kernel send RST, which can destroy
        the close frame or HTTP error still in flight to the client.
        """
        conn.lingering = True
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._drop(conn)
        if self.stopping:
            return self._release(conn)   # a stop does not wait on peers that keep TCP open
        self._timer(self.close_timeout or 1.0, _T_LINGER, conn)

    def _eof(self, conn: Connection) -> None:
        if not conn.lingering:
            conn.proto.receive_eof()
            conn.proto.events.clear()
            self._closed(conn)
        self._release(conn)

    def _drop(self, conn: Connection) -> None:
        """The socket failed (reset, broken pipe) or a deadline passed: close it now."""
        if conn.fd in self.conns:
            conn.proto.receive_eof()
            conn.proto.events.clear()
            self._closed(conn)
            self._release(conn)

    def _release(self, conn: Connection) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        conn.proto.on_message = None      # break the conn → proto → callback → conn cycle
        self._ended(conn.peer)
        if not conn.handler:
            self.slot.handshake_failed(conn.proto.close_code)
            if self.access_log:
                code = conn.proto.close_code
                self._access(conn, code if code is not None and code < 1000 else None)
        if conn.handshaking:
            self.slot.handshakes -= 1
        self.slot.connections -= 1
        self.slot.backlog -= conn.backlog
        conn.backlog = 0
        try:
            self.ep.unregister(conn.fd)
        except (OSError, ValueError):
            pass   # already gone with the socket
        conn.sock.close()

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Poll a descriptor that is not a client (channel, signals, bus links)."""
        self.aux[fd] = on_readable
        self.ep.register(fd, select.EPOLLIN)

    def unwatch(self, fd: int) -> None:
        if self.aux.pop(fd, None) is not None:
            self.ep.unregister(fd)

    def _ended(self, peer: str) -> None:
        """A connection the master counted for max_connections_per_ip is gone."""
        if self.per_ip_cap:
            self.ended_peers.append(peer)

    def _report_ended(self) -> None:
        if report_closed(self.channel, self.ended_peers[:_REPORT_BATCH]):
            del self.ended_peers[:_REPORT_BATCH]

    def mark_dirty(self, conn: Connection) -> None:
        """`conn` has bytes to send: flush it at the end of this loop turn."""
        if not conn.dirty:
            conn.dirty = True
            self.dirty.append(conn)

    def make_room(self, conn: Connection) -> bool:
        """`conn`'s outbound buffer would pass max_outbound_buffer: apply its service's
        `slow_consumer` policy. Returns False: the message is not queued ("drop" keeps the
        connection, "close" ends it with 1008; either way memory stays bounded)."""
        self.slot.dropped += 1
        if conn.service.config.slow_consumer == "close":
            self.repeats.info("slow consumer", "closing %s (handler %d): its outbound buffer is full",
                              conn.peer, conn.handler)
            self.close_connection(conn, CloseCode.POLICY_VIOLATION, "outbound buffer full: reading too slowly")
        return False

    def close_connection(self, conn: Connection, code: int, reason: str) -> None:
        """Start the closing handshake; the peer gets `close_timeout` to answer."""
        if conn.proto.close(code, reason):
            self._timer(self.close_timeout or 1.0, _T_CLOSE, conn)
            self.mark_dirty(conn)

    # ------------------------------------------------------------------ timers

    def _timer(self, delay: float, kind: int, conn: Connection) -> None:
        self.timer_seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self.timer_seq, kind, conn))

    def _run_timers(self, now: float) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, _, kind, conn = heapq.heappop(timers)
            if conn.fd not in self.conns or self.conns[conn.fd] is not conn:
                continue
            state = conn.proto.state
            try:
                if kind == _T_HANDSHAKE and state < State.OPEN:
                    self._drop(conn)
                elif kind == _T_CLOSE and state == State.CLOSING:
                    self._drop(conn)
                elif kind == _T_LINGER:
                    self._release(conn)
            except Exception as e:   # the fault barrier, as in run()
                self._fault(conn, e)

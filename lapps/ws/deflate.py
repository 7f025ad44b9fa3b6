"""permessage-deflate (RFC 7692), server side: negotiation and the per-message codec.

Pure logic like the rest of `lapps.ws`: header values in, a response value and a codec out;
compressed bytes in, message bytes out. `ServerProtocol` owns the framing (RSV1, which
messages it compresses) and calls in here.

Memory policy, chosen for many mostly idle connections:

- Server -> client. We ALWAYS answer `server_no_context_takeover` (RFC 7692 §7.1.1.1 lets
  the server declare it whatever the offer), so every message we send is compressed on
  its own and no compressor state lives between messages. One zlib compressor per
  (window bits, level) then serves every connection of the process (`_compressor`): each
  message ends with `Z_FULL_FLUSH`, which empties the pending output AND resets the
  LZ77 history, so the next message (of any connection) cannot refer back to this one
  and nothing leaks from one connection into another's stream. A level-6 compressor
  with a 15-bit window is ~270 KB; shared, a worker pays it once, not per connection
  (a fresh compressor per message would hold nothing between messages either, at about
  the same speed, but allocates and frees those 270 KB for every message).
- Client -> server. The client may keep its window between messages unless it offered
  `client_no_context_takeover` (we accept that whenever it is offered, never impose it).
  With it, the inflater is created at the first byte of a compressed message and dropped
  at its end: an idle connection holds no zlib state. Without it, each connection keeps
  its own inflater for its whole life: the zlib inflate state (~7 KB) plus a 32 KiB
  window, about 40 KB per connection once a first compressed message has arrived.
  The inflater is NEVER shared between connections: with context takeover a client may
  copy bytes from its window, and a shared window would hold other connections' data, so
  a client could read what other clients sent.
- Our inflater always uses a 15-bit window, which reads data compressed with any smaller
  window, so we never need `client_max_window_bits` in the answer.

Decompression is bounded: `decompress` asks zlib for at most what the message may still
grow by (plus one byte, to see that it is too much), in steps of 256 KiB, so a compression
bomb fails with 1009 having allocated about `max_size`, never the bomb's full size; the
input zlib did not get to stays in `unconsumed_tail` and is dropped.
A message must also leave the stream on a block boundary once the tail is added (that is
what stripping an empty stored block leaves); one cut short fails with 1007 rather than
passing for a shorter message. Senders may end a message with a BFINAL=1 block
(§7.2.3.4); what follows it is inflated by a fresh inflater.
Data that is not valid DEFLATE must fail the connection; RFC 7692 names no close code
for it, and we use 1007 ("data inconsistent with the type of the message"), the code a
receiver already uses for a payload it cannot interpret (invalid UTF-8). 1002 would
also be defensible; 1007 tells the two kinds of fault (framing vs. payload) apart.
"""

from __future__ import annotations

import zlib

from .constants import CloseCode

EXTENSION = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"          # the empty stored block RFC 7692 §7.2.1 strips, §7.2.2 re-adds
COMPRESS_THRESHOLD = 128            # smaller messages gain little or nothing (see worth_compressing)
DEFAULT_LEVEL = 6
_INFLATE_WBITS = -15                # raw DEFLATE, the largest window: reads any client window
_STEP = 256 * 1024                  # most inflated bytes asked of zlib per call
_IN_STEP = 64 * 1024                # most compressed bytes handed to zlib per call

# RFC 7692 §7.1.2: a decimal integer 8..15 "without leading zeroes"
_WINDOW_VALUES = {str(n): n for n in range(8, 16)}

# RFC 9110 §5.6.2 token characters (extension names, parameter names, unquoted values)
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class DeflateError(Exception):
    """The peer's compressed data cannot be accepted; `code` is the close code to fail with
    (1009: the message inflates past the size limit, 1007: not valid DEFLATE data)."""

    def __init__(self, reason: str, code: int, inflated: list[bytes] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.inflated = inflated or []   # what this call inflated (within the limit) before failing:
        #                            a text message's UTF-8 check sees it first, so the close
        #                            code does not depend on how the payload was split


def worth_compressing(n: int) -> bool:
    """Whether a message of `n` bytes should be sent compressed (RSV1) at all.

    Below 128 bytes DEFLATE rarely wins: a few bytes of block header and no history to
    refer to (each message is compressed alone). RFC 7692 §6 lets an endpoint send any
    message uncompressed once the extension is negotiated, so the caller may skip them.
    """
    return n >= COMPRESS_THRESHOLD


# ---------------------------------------------------------------------------- negotiation

def _split(value: str, sep: str) -> list[str] | None:
    """Split `value` on `sep` outside quoted strings; None when a quote is unterminated."""
    parts: list[str] = []
    start = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i += 1
            while i < n and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
            if i >= n:
                return None
        elif c == sep:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


def _token(s: str) -> bool:
    return bool(s) and all(c in _TCHAR for c in s)


def _param_value(raw: str) -> str | None:
    """The value of `name=value`: a token, or a quoted-string unescaped to a token
    (RFC 7692 §7: quoted values must be tokens once unescaped). None when invalid."""
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            return None
        out = []
        body = raw[1:-1]
        i = 0
        while i < len(body):
            c = body[i]
            if c == "\\":
                i += 1
                if i == len(body):
                    return None
                c = body[i]
            elif c == '"':
                return None
            out.append(c)
            i += 1
        raw = "".join(out)
    return raw if _token(raw) else None


def parse_extensions(header_values: list[str]) -> list[tuple[str, list[tuple[str, str | None]]] | None]:
    """Every extension offer in the `Sec-WebSocket-Extensions` values, in order.

    Each offer is `(name, [(param, value or None), ...])`, or None where that element is
    malformed (bad token, bad quoting). An unterminated quote spoils the rest of its header
    value, which then yields one None. Empty list elements (`a,,b`) are skipped (RFC 9110 §5.6.1).
    """
    offers: list[tuple[str, list[tuple[str, str | None]]] | None] = []
    for value in header_values:
        elements = _split(value, ",")
        if elements is None:
            offers.append(None)
            continue
        for element in elements:
            if not element.strip(" \t"):
                continue
            pieces = _split(element, ";")
            assert pieces is not None     # quotes balanced across the whole value already
            name = pieces[0].strip(" \t")
            if not _token(name):
                offers.append(None)
                continue
            params: list[tuple[str, str | None]] | None = []
            for piece in pieces[1:]:
                pname, eq, pvalue = piece.partition("=")
                pname = pname.strip(" \t")
                if not _token(pname):
                    params = None
                    break
                if eq:
                    v = _param_value(pvalue.strip(" \t"))
                    if v is None:
                        params = None
                        break
                    params.append((pname, v))
                else:
                    params.append((pname, None))
            offers.append(None if params is None else (name, params))
    return offers


def _accept_offer(params: list[tuple[str, str | None]]) -> tuple[bool, int | None] | None:
    """Our answer to one permessage-deflate offer: (client_no_context_takeover,
    server_max_window_bits or None), or None to decline it."""
    seen: set[str] = set()
    client_nct = False
    server_bits: int | None = None
    for name, value in params:
        if name in seen:
            return None                               # duplicated parameter (§7)
        seen.add(name)
        if name == "server_no_context_takeover":
            if value is not None:
                return None
        elif name == "client_no_context_takeover":
            if value is not None:
                return None
            client_nct = True
        elif name == "server_max_window_bits":
            if value not in _WINDOW_VALUES:
                return None
            server_bits = _WINDOW_VALUES[value]
        elif name == "client_max_window_bits":
            if value is not None and value not in _WINDOW_VALUES:
                return None
            # nothing to do: our 15-bit inflater reads any window the client picks
        else:
            return None                               # unknown parameter (§7)
    if server_bits == 8:
        # zlib cannot deflate with a 256-byte window (it refuses wbits=-8, or silently
        # uses 9 in old versions), and a 512-byte window could exceed the client's
        # inflater: decline and let a later offer (or no compression) win.
        return None
    return client_nct, server_bits


def negotiate(header_values: list[str], level: int = DEFAULT_LEVEL) -> tuple[Deflate | None, str | None]:
    """Pick the first permessage-deflate offer we can honour.

    `header_values`: every `Sec-WebSocket-Extensions` value of the request, in order.
    Returns the connection's `Deflate` and the value for the response header
    (`Sec-WebSocket-Extensions: <value>`), or (None, None) when nothing acceptable was
    offered. Never raises for a bad offer: an offer we decline just means no compression.
    """
    for offer in parse_extensions(header_values):
        if offer is None or offer[0] != EXTENSION:
            continue
        accepted = _accept_offer(offer[1])
        if accepted is None:
            continue
        client_nct, server_bits = accepted
        response = EXTENSION + "; server_no_context_takeover"
        if client_nct:
            response += "; client_no_context_takeover"
        if server_bits is not None:
            response += f"; server_max_window_bits={server_bits}"
        return Deflate(client_nct, server_bits or 15, level), response
    return None, None


# ---------------------------------------------------------------------------- the codec

# One compressor per (window bits, level) for the whole process, shared by every
# connection. Safe only because every message ends with Z_FULL_FLUSH (history reset, all
# output emitted) and because a worker is single-threaded: compress() and flush() are two
# calls, and another thread's message between them would be mixed into this one.
# There is deliberately no shared inflater (see the module docstring).
_COMPRESSORS: dict[tuple[int, int], zlib._Compress] = {}


def _compressor(wbits: int, level: int) -> zlib._Compress:
    key = (wbits, level)
    c = _COMPRESSORS.get(key)
    if c is None:
        c = _COMPRESSORS[key] = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    return c


class Deflate:
    """The permessage-deflate state of one connection.

    Inbound, for each compressed message (RSV1 on its first frame): `decompress(chunk,
    max_size)` for every piece of payload as it arrives, then `end_message(max_size)`
    once the final frame is complete; the message is the concatenation of what they
    return. Outbound: `compress(payload)` gives the payload of a frame with RSV1 set.
    After a `DeflateError` the connection is failed; the object is not used again.

    `max_size` bounds the inflated message; the limit on compressed bytes read off the
    wire stays the protocol's. Text messages are UTF-8-checked by the caller on the
    inflated output, which arrives in pieces like uncompressed payload does.
    """

    __slots__ = ("client_no_context_takeover", "server_max_window_bits", "level", "_inflater",
                 "_pending", "_size")

    worth_compressing = staticmethod(worth_compressing)

    def __init__(self, client_no_context_takeover: bool = False, server_max_window_bits: int = 15,
                 level: int = DEFAULT_LEVEL):
        if not 9 <= server_max_window_bits <= 15:
            raise ValueError("server_max_window_bits must be 9..15")
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.level = level
        self._inflater: zlib._Decompress | None = None  # created at the first compressed byte
        self._pending = False     # bytes went into the inflater since the last block boundary we know of
        self._size = 0            # inflated bytes of the current message so far

    # ------------------------------------------------------------------ inbound

    def decompress(self, chunk: bytes | bytearray | memoryview, max_size: int) -> bytes:
        """Inflate the next compressed payload bytes of the current message.

        Raises DeflateError with 1009 as soon as the message's inflated size would pass
        `max_size` (zlib is never asked for more than `max_size` + 1 bytes of it), 1007
        on invalid data.
        """
        if not chunk:
            return b""
        return self._inflate(chunk, max_size)

    def end_message(self, max_size: int) -> bytes:
        """The message's compressed payload is complete: add the `00 00 ff ff` tail
        (RFC 7692 §7.2.2), return the output it releases, get ready for the next message.

        The tail must leave the DEFLATE stream on a block boundary (§7.2.1: the sender
        strips exactly an empty stored block); a message cut short or padded with junk
        does not, and fails with 1007 instead of passing for a shorter message.
        """
        out = b""
        if self._pending:
            out = self._inflate(TAIL, max_size)
            if self._pending and not self._at_block_boundary():
                raise DeflateError("compressed message does not end on a DEFLATE block boundary",
                                   CloseCode.INVALID_DATA)
        # else nothing since a boundary: an empty payload (the RFC's empty message is 0x00,
        # but senders also send none), or a final BFINAL=1 block that ended the payload
        # exactly; adding the tail there would open a stored block that never ends.
        self._size = 0
        self._pending = False
        if self.client_no_context_takeover:
            self._inflater = None         # every message stands alone: hold nothing between
        return out

    def _at_block_boundary(self) -> bool:
        """Whether the inflater waits for a block header: only then does an empty final
        block (03 00) end the stream with no output. Probes a copy (~2 us: the state and the
        32 KiB window) when the window must survive for the next message."""
        d = self._inflater
        assert d is not None
        probe = d if self.client_no_context_takeover else d.copy()
        try:
            return not probe.decompress(b"\x03\x00", 1) and probe.eof
        except zlib.error:
            return False

    def _inflate(self, data: bytes | bytearray | memoryview, max_size: int) -> bytes:
        # Bounded in both directions, so a bomb costs about max_size and no more:
        # - output: zlib is asked for one byte more than the message may still grow by
        #   (that byte is how we know it is too much), and for at most _STEP per call, so the
        #   result of each call (built in blocks, then copied whole) stays small;
        # - input: fed in slices of _IN_STEP, because each call that stops on the output
        #   limit copies the input it did not reach into `unconsumed_tail`.
        room = max(max_size - self._size, 0)  # output this message may still produce
        parts: list[bytes] = []
        n = len(data)
        pos = 0
        buf = b""                             # input on its way into the inflater
        full = False                          # the last call filled its output limit
        try:
            while True:
                if not buf:
                    if pos < n:
                        buf = data if n <= _IN_STEP else data[pos:pos + _IN_STEP]
                        pos += len(buf)
                    elif not full:
                        break
                    # else: no input left, but zlib may hold output back: ask again
                d = self._inflater
                if d is None:
                    d = self._inflater = zlib.decompressobj(_INFLATE_WBITS)
                self._pending = True
                limit = room + 1 if room < _STEP else _STEP
                part = d.decompress(buf, limit)
                if len(part) > room:
                    raise DeflateError(f"message inflates to more than {max_size} bytes",
                                       CloseCode.MESSAGE_TOO_BIG, [*parts, part[:room]])
                room -= len(part)
                if part:
                    parts.append(part)
                full = len(part) == limit
                if d.eof:
                    # A block with BFINAL=1 ended the zlib stream (RFC 7692 §7.2.3.4 allows
                    # it). What follows is more DEFLATE blocks (the RFC's example: a 00 octet
                    # that, with the tail, is an empty stored block): go on with a fresh
                    # inflater. Its window is empty, so a block that refers back across the
                    # BFINAL boundary fails as invalid data (1007) rather than inflating
                    # wrong: zlib offers no way to carry the old window over.
                    buf = d.unused_data
                    self._inflater = None
                    self._pending = full = False
                else:
                    buf = d.unconsumed_tail   # input zlib had no output room for yet
        except zlib.error as e:
            raise DeflateError(f"invalid compressed data: {e}", CloseCode.INVALID_DATA, parts) from None
        self._size = max_size - room
        return b"".join(parts)

    # ------------------------------------------------------------------ outbound

    def compress(self, payload: bytes | bytearray | memoryview) -> bytes:
        """The compressed payload of one whole message (RSV1 set on its first frame),
        without the trailing `00 00 ff ff` (RFC 7692 §7.2.1). Each message stands alone."""
        key = (self.server_max_window_bits, self.level)
        c = _COMPRESSORS.get(key) or _compressor(*key)
        try:
            data = c.compress(payload) + c.flush(zlib.Z_FULL_FLUSH)
        except BaseException:
            # half a message may sit in the shared compressor: never let it prefix the
            # next message of some other connection
            _COMPRESSORS.pop(key, None)
            raise
        if data[-4:] != TAIL:   # cannot happen with zlib; never send a message without it
            _COMPRESSORS.pop(key, None)
            raise RuntimeError("zlib full flush did not end with an empty stored block")
        return data[:-4]


__all__ = ["Deflate", "DeflateError", "EXTENSION", "TAIL", "COMPRESS_THRESHOLD", "negotiate",
           "parse_extensions", "worth_compressing"]

"""The outbound-buffer rule: whether one more message may join a connection's queue.

One home for a rule that three paths apply: a direct `ws:send` (`ServiceHost._queue`), a
broadcast to subscribers (`send_to_all`, workers/fanout.py), and the replies Lua keeps back in
onMessage (lapps/lua ws module, whose cheap pre-check `used == 0 or used + len <= max_out`
is this function written in Lua, so that keeping a reply costs no crossing to Python;
tests/test_outbound.py checks that both give the same answers).
"""

from __future__ import annotations


def fits(queued: int, size: int, limit: int) -> bool:
    """Whether `size` more bytes may join the `queued` bytes of one connection's outbound
    buffer under `limit` (max_outbound_buffer).

    An empty buffer takes any one message, whatever its size: the limit bounds how far a
    slow reader may fall behind, not how large a message may be (max_message_size does).
    """
    return not queued or queued + size <= limit

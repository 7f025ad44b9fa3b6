"""mqr: the packets (bytes alone), then a real broker thread with real clients over Unix
sockets in this process (flow control, fairness, exactly-once, a graceful stop), then the
original's mqr_sender and two mqr_receiver on the real server.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from lapps.ipc import mqr
from lapps.ipc.bus import BusError
from lapps.ipc.mqr import MqrBroker, MqrClient

ORIGINAL = Path(__file__).resolve().parent.parent.parent / "shared" / "original-lapps"


# -- packets ------------------------------------------------------------------------------------

def test_frame_round_trip():
    assert mqr.unframe(mqr.frame(b"P", b"jobs", b"\x00payload")) == (b"P", b"jobs", b"\x00payload")
    assert mqr.unframe(mqr.frame(b"E", b"")) == (b"E", b"", b"")


def test_messages_round_trip_including_empty_ones():
    msgs = [b"", b"a", bytes(range(256)) * 300, b"z"]
    assert list(mqr.unpack_messages(mqr.pack_messages(msgs))) == msgs


def test_take_batch_respects_count_and_bytes_but_always_takes_one():
    q = deque([b"x" * 100] * 10)
    assert len(mqr.take_batch(q, 3)) == 3 and len(q) == 7
    big = deque([b"y" * (mqr.BATCH_BYTES + 1), b"small"])
    assert mqr.take_batch(big, 10) == [b"y" * (mqr.BATCH_BYTES + 1)]
    q = deque([b"m" * 1000] * 1000)
    batch = mqr.take_batch(q, 1000)
    assert sum(len(m) + 4 for m in batch) <= mqr.BATCH_BYTES + 1004 and len(batch) < 1000


# -- a real broker ------------------------------------------------------------------------------

@pytest.fixture
def broker(monkeypatch):
    """A broker on a name no server uses (a fake master pid), small limits so tests are quick."""
    monkeypatch.setattr(mqr, "MAX_QUEUE", 200)
    monkeypatch.setattr(mqr, "WINDOW", 32)
    monkeypatch.setattr(mqr, "POST_WAIT", 3.0)
    stop = threading.Event()
    fake_pid = 4_000_000 + os.getpid()
    b = MqrBroker(fake_pid, stop)
    b.start()
    yield fake_pid
    stop.set()
    b.join(2)
    b.sock.close()


def fill(producer: MqrClient) -> int:
    """Post to "q" until the broker gives no more credit even after a pause; how many went in."""
    accepted = 0
    refused_after_a_pause = False
    while not refused_after_a_pause:
        try:
            producer.post("q", b"%d" % accepted)
            accepted += 1
        except BusError as e:
            assert str(e) == "queue full"
            time.sleep(0.1)      # the broker may only be behind: its grants come meanwhile
            try:
                producer.post("q", b"%d" % accepted)
                accepted += 1
            except BusError:
                refused_after_a_pause = True
    return accepted


def test_a_producer_without_consumers_gets_queue_full_and_loses_nothing(broker):
    producer = MqrClient(broker, blocking=False)   # as in an IO worker: never waits
    accepted = fill(producer)
    # the queue's bound plus at most one window of credit
    assert mqr.MAX_QUEUE <= accepted <= mqr.MAX_QUEUE + mqr.WINDOW
    consumer = MqrClient(broker)
    got = [consumer.try_recv("q") for _ in range(accepted)]
    assert got == [b"%d" % i for i in range(accepted)]
    assert consumer.try_recv("q") is None
    producer.post("q", b"room again")          # credit came back as the queue drained
    assert consumer.try_recv("q") == b"room again"


def test_a_blocking_producer_waits_for_room_then_goes_on(broker):
    producer = MqrClient(broker, blocking=False)
    fill(producer)
    producer.blocking = True
    consumer = MqrClient(broker)
    received: list[bytes] = []

    def drain_later() -> None:
        time.sleep(0.5)
        while (m := consumer.try_recv("q")) is not None:
            received.append(m)

    t = threading.Thread(target=drain_later)
    t.start()
    started = time.monotonic()
    producer.post("q", b"after waiting")      # blocks until the consumer made room
    waited = time.monotonic() - started
    t.join()
    assert waited >= 0.3
    while (m := consumer.try_recv("q")) is not None:
        received.append(m)
    assert received[-1] == b"after waiting" and len(received) == len(set(received))


def test_a_blocking_producer_gives_up_when_it_must_stop(broker):
    stopping = threading.Event()
    producer = MqrClient(broker, must_stop=stopping.is_set)
    with pytest.raises(BusError, match="queue full"):
        for i in range(10_000):
            if i == mqr.MAX_QUEUE:
                threading.Timer(0.3, stopping.set).start()
            producer.post("q", b"x")


def test_a_flooding_producer_does_not_starve_receivers(broker):
    """The original's pair: one post loop as fast as it goes, two receivers."""
    done = threading.Event()
    counts = [0, 0]

    def produce() -> None:
        p = MqrClient(broker, must_stop=done.is_set)
        try:
            while not done.is_set():
                p.post("testpipe", b"hello")
        except BusError:
            pass

    def consume(i: int) -> None:
        c = MqrClient(broker, must_stop=done.is_set)
        while c.recv("testpipe") is not None:
            counts[i] += 1
        c.close()

    threads = [threading.Thread(target=produce)] + [threading.Thread(target=consume, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    done.set()
    for t in threads:
        t.join(5)
    assert counts[0] > 100 and counts[1] > 100, counts


def test_two_receivers_share_a_queue_each_message_once(broker):
    n = 3000
    producer = MqrClient(broker)
    got: list[list[bytes]] = [[], []]
    stop = threading.Event()

    def consume(i: int) -> None:
        c = MqrClient(broker, must_stop=stop.is_set)
        while (m := c.recv("jobs")) is not None:
            got[i].append(m)
        c.close()

    threads = [threading.Thread(target=consume, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for i in range(n):
        producer.post("jobs", b"%d" % i)
    deadline = time.monotonic() + 10
    while len(got[0]) + len(got[1]) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(5)
    everything = got[0] + got[1]
    assert sorted(everything, key=int) == [b"%d" % i for i in range(n)]
    for part in got:   # each receiver sees its share in the order posted
        assert [int(m) for m in part] == sorted(int(m) for m in part)


def test_a_receiver_that_stops_gives_back_what_it_had_taken(broker):
    producer = MqrClient(broker)
    for i in range(50):
        producer.post("q", b"%d" % i)
    first = MqrClient(broker)
    assert first.recv("q") == b"0"             # its batch holds the other 49
    first.close()
    second = MqrClient(broker)
    rest: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(rest) < 49 and time.monotonic() < deadline:   # the give-back is asynchronous
        if (m := second.try_recv("q")) is not None:
            rest.append(m)
    assert sorted(rest, key=int) == [b"%d" % i for i in range(1, 50)]
    assert second.try_recv("q") is None


def test_a_receiver_told_to_stop_returns_none(broker):
    stopping = threading.Event()
    c = MqrClient(broker, must_stop=stopping.is_set)
    threading.Timer(0.2, stopping.set).start()
    assert c.recv("empty") is None


# -- the original's pair on the real server -----------------------------------------------------

@pytest.mark.skipif(not (ORIGINAL / "examples").is_dir(),
                    reason=f"the original LAppS files are not here ({ORIGINAL})")
def test_original_mqr_pair_delivers_to_both_receivers_while_the_sender_floods(lapps_server):
    examples = ORIGINAL / "examples"
    server = lapps_server(
        {"mqr_sender": {"standalone": True, "preload": ["mqr"]},
         "mqr_receiver": {"standalone": True, "instances": 2, "preload": ["mqr", "time"],
                          "depends": ["mqr_sender"]}},
        copy={"mqr_sender": examples / "mqr_sender", "mqr_receiver": examples / "mqr_receiver"})
    lines = server.wait_log(r"\[mqr_receiver\] Received \d+ messages per \d+ms", timeout=10, count=6)
    by_instance: dict[str, list[int]] = {}
    for line in lines:
        who = re.search(r"service (mqr_receiver#\d)", line).group(1)
        by_instance.setdefault(who, []).append(int(re.search(r"Received (\d+)", line).group(1)))
    assert len(by_instance) == 2, lines
    assert all(max(counts) > 0 for counts in by_instance.values()), by_instance
    log = server.log()
    assert "is full" not in log and "dropped" not in log
    assert len(log.splitlines()) < 60, "the log grows per post"

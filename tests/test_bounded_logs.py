"""Bounded logs: a warning that can fire per message or connection is written once, then counted.

`RepeatLimiter` (lapps/logs.py) on a fake clock, then the real server: a flood of refused
connections (429, 503) writes one line per interval with the count, and those refusals
carry Retry-After (RFC 6585 §4, RFC 9110 §10.2.3).
"""

from __future__ import annotations

import logging
import re
import time

import pytest

from conftest import held_connections, wait_for
from lapps.logs import RepeatLimiter
from lapps.master.listeners import RETRY_AFTER
from wsclient import connect


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter(caplog):
    caplog.set_level(logging.INFO, logger="test.repeats")
    clock = Clock()
    return RepeatLimiter(logging.getLogger("test.repeats"), 10.0, clock), clock, caplog


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_first_event_is_logged_at_once_and_repeats_are_only_counted(limiter):
    rl, clock, caplog = limiter
    for i in range(1000):
        rl.warning("full", "queue %s is full (post %d)", "q", i)
    assert lines(caplog) == ["queue q is full (post 0)"]
    clock.now += 10
    rl.flush()
    assert lines(caplog) == ["queue q is full (post 0)", "queue q is full (post 999) [999 more like this in 10s]"]


def test_the_count_line_comes_with_the_next_event_after_the_interval(limiter):
    rl, clock, caplog = limiter
    rl.warning("k", "event %d", 1)
    rl.warning("k", "event %d", 2)
    clock.now += 11
    rl.warning("k", "event %d", 3)
    assert lines(caplog) == ["event 1", "event 2 [1 more like this in 10s]", "event 3"]


def test_keys_are_limited_apart_and_a_quiet_key_writes_nothing_more(limiter):
    rl, clock, caplog = limiter
    rl.error("a", "a happened")
    rl.error("b", "b happened")
    rl.error("a", "a happened")
    assert lines(caplog) == ["a happened", "b happened"]
    clock.now += 10
    rl.flush()
    rl.flush()
    assert lines(caplog) == ["a happened", "b happened", "a happened [1 more like this in 10s]"]
    assert [r.levelname for r in caplog.records] == ["ERROR"] * 3


def test_the_first_event_keeps_its_traceback(limiter):
    rl, clock, caplog = limiter
    try:
        raise ValueError("bug")
    except ValueError as e:
        rl.error("site", "failed: %r", e, exc_info=e)
        rl.error("site", "failed: %r", e, exc_info=e)
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None


# ---------------------------------------------------------------------- the real server

def refused_lines(server, what: str) -> list[str]:
    return [line for line in server.log().splitlines() if f"refused 127.0.0.1: {what}" in line]


def test_429_carries_retry_after_and_a_flood_of_refusals_logs_a_count(lapps_server):
    server = lapps_server(settings={"limits": {"max_connections_per_ip": 1},
                                    "server": {"log_repeat_interval": 1}})
    assert wait_for(lambda: held_connections(server) == 0, 5)   # the readiness probe's is gone
    time.sleep(0.5)   # and reported closed to the master, which counts per address
    with connect(server.port) as held:
        assert held.status == 101
        for _ in range(40):
            with connect(server.port) as c:
                assert c.status == 429, c.status_line
                assert c.headers["retry-after"] == str(RETRY_AFTER)
        first = refused_lines(server, "too many connections")
        assert len(first) == 1, first
        counted = server.wait_log(r"refused 127\.0\.0\.1: too many connections .*\[\d+ more like this in 1s\]",
                                  timeout=5)
        assert int(re.search(r"\[(\d+) more", counted[0]).group(1)) == 39
    assert len(refused_lines(server, "too many connections")) == 2


def test_503_carries_retry_after(lapps_server):
    server = lapps_server(settings={"server": {"max_connections": 1}})
    assert wait_for(lambda: held_connections(server) == 0, 5)   # the readiness probe's is gone
    with connect(server.port) as held:
        assert held.status == 101
        with connect(server.port) as c:
            assert c.status == 503, c.status_line
            assert c.headers["retry-after"] == str(RETRY_AFTER)


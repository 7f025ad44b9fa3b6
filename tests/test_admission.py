"""The pure admission pieces: address ACLs (IPv4, IPv6, mapped) and the balancer's pick."""

from __future__ import annotations

import pytest

from lapps.ipc.slots import SlotView, WorkerState
from lapps.acl import Acl
from lapps.master.balancer import pick_worker


@pytest.mark.parametrize(("policy", "exclude", "address", "allowed"), [
    ("allow", [], "203.0.113.9", True),
    ("deny", [], "203.0.113.9", False),
    ("allow", ["203.0.113.0/24"], "203.0.113.9", False),
    ("allow", ["203.0.113.0/24"], "198.51.100.1", True),
    ("deny", ["10.0.0.0/8", "2001:db8::/32"], "10.1.2.3", True),
    ("deny", ["10.0.0.0/8", "2001:db8::/32"], "2001:db8::1", True),
    ("deny", ["10.0.0.0/8", "2001:db8::/32"], "2001:db9::1", False),
    ("deny", ["10.0.0.0/8"], "::ffff:10.9.8.7", True),          # IPv4-mapped IPv6 counts as IPv4
    ("allow", ["::1"], "::1", False),
    ("allow", ["fe80::/10"], "fe80::1%eth0", False),            # scoped addresses
    ("deny", ["127.0.0.1"], "127.0.0.1", True),
])
def test_acl(policy, exclude, address, allowed):
    assert Acl(policy, exclude).allows(address) is allowed


def slot(connections=0, state=WorkerState.RUNNING, backlog=0) -> SlotView:
    return SlotView(1, state, 0.0, connections, 0, 0, 0, 0, 0, 0, backlog, 0, 0)


def test_least_loaded_running_worker_wins():
    slots = [slot(5), slot(2), slot(3)]
    assert pick_worker(slots, [0, 0, 0], 100, 1.0, 0.01) == 1


def test_queued_connections_count_against_a_worker():
    slots = [slot(2), slot(2)]
    assert pick_worker(slots, [3, 0], 100, 1.0, 0.01) == 1


def test_backlog_weighs_in():
    slots = [slot(2, backlog=1024 * 1024), slot(2)]
    assert pick_worker(slots, [0, 0], 100, 1.0, 0.01) == 1


def test_full_booting_draining_and_dead_workers_are_never_picked():
    slots = [slot(10), slot(0, WorkerState.BOOTING), slot(0, WorkerState.DRAINING), slot(0, WorkerState.EMPTY)]
    assert pick_worker(slots, [0, 0, 0, 0], 10, 1.0, 0.01) is None


def test_ties_rotate_with_the_start():
    slots = [slot(1), slot(1), slot(1)]
    assert [pick_worker(slots, [0, 0, 0], 100, 1.0, 0.01, start) for start in range(3)] == [0, 1, 2]

"""services/echo_lapps speaks the original's flow (examples/echo_lapps and its client.html):
login with [{user, password}] and the demo users, echo, subscribe as a client notification on
cid 5, logout as a notification that closes with 1000, errors on cid 3 when not logged in."""

from __future__ import annotations

import pytest

from lapps.client import ConnectionClosed, LappsRequestError, connect

SERVICES = {"echo_lapps": {"protocol": "LAppS", "preload": ["time", "murmur"]},
            "time_broadcast": {"standalone": True, "preload": ["nap", "time"]}}
PAYLOAD = list(range(1, 26))   # the original client's echo params


@pytest.fixture(scope="module")
def server(lapps_server_module):
    return lapps_server_module(SERVICES)


def url(server) -> str:
    return f"ws://127.0.0.1:{server.port}/echo_lapps"


@pytest.mark.parametrize("user", ["admin", "guest"])
def test_the_original_clients_flow_login_echo_subscribe_on_cid_5_logout(server, user):
    with connect(url(server)) as c:
        [key] = c.request("login", [{"user": user, "password": user}])
        assert set(key) == {"authkey"}
        assert c.request("echo", [key, PAYLOAD]) == [PAYLOAD]
        assert c.request("whoami", [key]) == [user]
        c.notify("subscribe", [key], cid=5)
        c.notify("subscribe", [key], cid=6)      # the original's blob channel: accepted, nothing comes
        tick = c.next_oon(5, timeout=5)
        assert isinstance(tick[0], int)
        c.notify("logout", [key], cid=1)         # a notification: the original closes with 1000
        with pytest.raises(ConnectionClosed) as e:
            c.next_oon(99, timeout=5)
        assert e.value.code == 1000


def test_a_wrong_password_is_error_10_and_the_connection_stays(server):
    with connect(url(server)) as c:
        with pytest.raises(LappsRequestError) as e:
            c.request("login", [{"user": "admin", "password": "guest"}])
        assert (e.value.code, e.value.message) == (10, "Authentication error")
        with pytest.raises(LappsRequestError) as e:
            c.request("login", [{"user": "nobody", "password": "x"}])
        assert e.value.code == 10
        with pytest.raises(LappsRequestError) as e:
            c.request("login", [{"user": "admin"}])
        assert e.value.code == -32602
        assert c.request("login", [{"user": "admin", "password": "admin"}])[0]["authkey"]


def test_notifications_without_a_login_get_an_error_object_on_cid_3(server):
    with connect(url(server)) as c:
        c.notify("subscribe", [{"authkey": "made up"}], cid=5)
        with pytest.raises(LappsRequestError) as e:
            c.next_oon(3, timeout=5)
        assert e.value.code == -32000


def test_unsubscribe_stops_the_time(server):
    with connect(url(server)) as c:
        [key] = c.request("login", [{"user": "admin", "password": "admin"}])
        assert c.request("subscribe", [key]) == []
        c.next_oon(5, timeout=5)
        assert c.request("unsubscribe", [key]) == []
        c.poll(0.2)                                # ticks sent before the unsubscribe
        seen: list = []
        c.on_oon(5, seen.append)                   # takes the queued ones at once
        seen.clear()
        c.poll(2.2)
        assert seen == [], "ticks after unsubscribe"

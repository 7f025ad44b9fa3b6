"""systemd's readiness protocol (sd_notify): a datagram to $NOTIFY_SOCKET, a few lines.

With `Type=notify` systemd waits for READY=1 before it calls the service started, and
RELOADING=1 … READY=1 brackets a reload. Outside systemd ($NOTIFY_SOCKET unset) it does
nothing, so the master calls it unconditionally.
"""

from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1\\nSTATUS=…") to systemd; False when not under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path   # '@' names the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), address)
        return True
    except OSError:
        return False

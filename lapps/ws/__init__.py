"""Sans-I/O WebSocket core (RFC 6455): bytes in, events and bytes out.

Nothing in this package touches a socket, a selector or the OS, so every rule can be
tested by feeding bytes. The IO worker owns the sockets and drives a `ServerProtocol`.
(It reads no environment: LAPPS_NO_SPEEDUPS is read by the package root, lapps/__init__.py.)
"""

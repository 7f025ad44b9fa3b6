"""Sans-I/O WebSocket core (RFC 6455): bytes in, events and bytes out.

Nothing in this package touches a socket, a selector or the OS, so every rule can be
tested by feeding bytes. The IO worker owns the sockets and drives a `ServerProtocol`.
(One read of the environment: `codec.py` looks at LAPPS_NO_SPEEDUPS once, at import.)
"""

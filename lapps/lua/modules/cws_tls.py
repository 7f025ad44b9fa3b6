"""wss:// for `cws`: the TLS client context of a service and the non-blocking handshake step.

A service's `cws` connections share one `ssl.SSLContext`, made at the first wss:// connection
(loading the system's CA store costs milliseconds that a service speaking only ws:// should
not pay). Verification is on by default, as in every browser and in python-websockets: the
server's certificate must chain to a trusted CA and name the host of the URI. A service sets
`cws_ca_file` (a PEM bundle that replaces the system's CAs, for a private CA) or
`cws_verify = false` (no check at all: development certificates only).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class TlsOptions:
    """What a service's config says about wss:// (`cws_verify`, `cws_ca_file`) and where a
    host:port is really reached (`cws_connect_to`, as curl's --connect-to: the URI's host
    stays what TLS verifies and what the Host header says)."""
    verify: bool = True
    ca_file: str = ""
    connect_to: Mapping[str, str] = field(default_factory=dict)

    def address(self, host: str, port: int) -> tuple[str, int]:
        """Where a connection to `host:port` goes: itself, or what connect_to maps it to."""
        shown = f"[{host}]" if ":" in host else host
        target = self.connect_to.get(f"{shown}:{port}")
        if target is None:
            return host, port
        where, _, number = target.rpartition(":")
        return where.strip("[]"), int(number)


class TlsContexts:
    """The one client context of a service, made on first use."""

    def __init__(self, options: TlsOptions) -> None:
        self.options = options
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        """The context; raises ssl.SSLError or OSError when `cws_ca_file` cannot be loaded."""
        if self._context is None:
            ctx = ssl.create_default_context(cafile=self.options.ca_file or None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if not self.options.verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._context = ctx
        return self._context


def handshake_step(sock: ssl.SSLSocket, where: str) -> tuple[str, str | None]:
    """Advance the TLS handshake of a non-blocking socket: ("done", None), ("read", None) or
    ("write", None) when it waits for the socket, ("failed", why) when it cannot succeed."""
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return "read", None
    except ssl.SSLWantWriteError:
        return "write", None
    except ssl.SSLCertVerificationError as e:
        return "failed", f"TLS: the certificate of {where} is not trusted: {e.verify_message}"
    except ssl.SSLEOFError:
        return "failed", f"TLS handshake with {where} failed: the server closed the connection"
    except (ssl.SSLError, OSError) as e:
        return "failed", f"TLS handshake with {where} failed: {e.strerror or e}"
    return "done", None

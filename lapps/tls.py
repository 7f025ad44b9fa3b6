"""TLS for wss:// listeners: the server-side SSL context, built from `[server.tls]`.

The master builds one at start only to check the files (a bad certificate or key stops
the start with a message naming the file); each IO worker builds its own after the fork
and runs the TLS handshakes itself, non-blocking, on the sockets it is handed.
"""

from __future__ import annotations

import ssl

from .config import ConfigError, TLSConfig

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    """A server context with the configured certificate chain, key and minimum version.

    Raises ConfigError naming the key and the file when they cannot be loaded.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.options |= ssl.OP_NO_COMPRESSION          # CRIME
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except FileNotFoundError as e:
        which = "key" if e.filename == tls.key else "cert"
        raise ConfigError(f"server.tls.{which}: file not found: {e.filename}") from None
    except ssl.SSLError as e:
        raise ConfigError(f"server.tls.cert / server.tls.key: cannot load {tls.cert} with {tls.key}: "
                          f"{e.reason or e}") from None
    except OSError as e:
        raise ConfigError(f"server.tls: cannot read {e.filename}: {e.strerror}") from None
    return ctx


def needs_tls(server) -> bool:
    """Whether any listening address of `[server]` serves wss://."""
    return server.tls.enabled or any(e.tls for e in server.endpoints)

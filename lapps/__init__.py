"""LAppS: a pre-fork WebSocket application server for Lua services.

`__version__` is the project's one version: pyproject.toml reads it (setuptools' dynamic
`attr`), and `lapps --version`, `/status`, the HTTP `Server:` header (SERVER_HEADER) and the Debian package
(packaging/build-deb.sh) all show it. Bump it here, with a CHANGELOG.md entry.
"""

import os as _os
import sys as _sys

__version__ = "0.3.0"

NO_SPEEDUPS_ENV = "LAPPS_NO_SPEEDUPS"
"""Set (not "" or "0"): the pure-Python codec, even where the C extension is built. Read here,
before any of lapps.ws is imported, which blocks the extension's import (lapps/ws/codec.py
then sees it blocked): lapps.ws itself reads no environment."""
if _os.environ.get(NO_SPEEDUPS_ENV, "") not in ("", "0"):
    _sys.modules.setdefault("lapps.ws._speedups", None)

SERVER_HEADER = ("Server", f"LAppS/{__version__}")
"""The `Server:` header of every HTTP answer the server writes (101, the errors of the workers and
of the listeners), as nginx's `Server: nginx/1.24.0` does."""

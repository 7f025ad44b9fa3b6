"""LAppS: a pre-fork WebSocket application server for Lua services.

`__version__` is the project's one version: pyproject.toml reads it (setuptools' dynamic
`attr`), and `lapps --version`, `/status`, the HTTP `Server:` header (SERVER_HEADER) and the Debian package
(packaging/build-deb.sh) all show it. Bump it here, with a CHANGELOG.md entry.
"""

__version__ = "0.3.0"

SERVER_HEADER = ("Server", f"LAppS/{__version__}")
"""The `Server:` header of every HTTP answer the server writes (101, the errors of the workers and
of the listeners), as nginx's `Server: nginx/1.24.0` does."""

"""LAppS: a pre-fork WebSocket application server for Lua services.

`__version__` is the project's one version: pyproject.toml reads it (setuptools' dynamic
`attr`), and `lapps --version`, `/status`, the HTTP `Server:` header and the Debian package
(packaging/build-deb.sh) all show it. Bump it here, with a CHANGELOG.md entry.
"""

__version__ = "0.3.0"

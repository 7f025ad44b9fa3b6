"""Which frame codec runs: the C extension `_speedups` or its pure-Python twins.

The one place that decides, read once at import: `protocol.py` (the scanner), `frames.py`
(masking, `frame_into`) and `lapps_protocol.py` (the UTF-8 check) take their functions from
`NATIVE` here, so a process never mixes the two paths. `LAPPS_NO_SPEEDUPS=1` forces the
pure-Python path where the extension is built: the package root (lapps/__init__.py, outside
this Sans-I/O package, which reads no environment) then blocks the extension's import (CI runs the tests that way too, so the
fallback a checkout without a C compiler gets is never an untested one). `DESCRIPTION`
is what the server logs at start.
"""

from __future__ import annotations

import sys
from types import ModuleType

_EXTENSION = "lapps.ws._speedups"


def _load() -> tuple[ModuleType | None, str]:
    if _EXTENSION in sys.modules and sys.modules[_EXTENSION] is None:
        return None, "pure Python (LAPPS_NO_SPEEDUPS=1)"   # blocked by lapps/__init__.py
    try:
        from . import _speedups
    except ImportError:   # built without a C compiler, or a checkout never built in place
        return None, "pure Python (extension not built)"
    return _speedups, "C speedups"


NATIVE, DESCRIPTION = _load()

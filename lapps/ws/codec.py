"""Which frame codec runs: the C extension `_speedups` or its pure-Python twins.

The one place that decides, read once at import: `protocol.py` (the scanner), `frames.py`
(masking, `frame_into`) and `lapps_protocol.py` (the UTF-8 check) take their functions from
`NATIVE` here, so a process never mixes the two paths. `LAPPS_NO_SPEEDUPS=1` forces the
pure-Python path where the extension is built (CI runs the tests that way too, so the
fallback a checkout without a C compiler gets is never an untested one). `DESCRIPTION`
is what the server logs at start.
"""

from __future__ import annotations

from os import environ   # the switch only: this module does no I/O
from types import ModuleType

NO_SPEEDUPS_ENV = "LAPPS_NO_SPEEDUPS"


def _load() -> tuple[ModuleType | None, str]:
    if environ.get(NO_SPEEDUPS_ENV, "") not in ("", "0"):
        return None, f"pure Python ({NO_SPEEDUPS_ENV}=1)"
    try:
        from . import _speedups
    except ImportError:   # built without a C compiler, or a checkout never built in place
        return None, "pure Python (extension not built)"
    return _speedups, "C speedups"


NATIVE, DESCRIPTION = _load()

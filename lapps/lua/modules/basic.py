"""The small built-in modules: `time`, `nap` and `murmur` (loaded through `preload`).

- `time.now()`: milliseconds since the Unix epoch, an integer (wall clock, as the
  original's `std::chrono::system_clock`).
- `nap:new()` (or `nap.new()`): an object with `sleep(seconds)`, `usleep(microseconds)`
  and `nsleep(nanoseconds)`, called `obj:sleep(1)` (or `obj.sleep(1)`). The sleeps BLOCK
  the whole process, so they are for standalone services only: in a reactive service
  they would stall every connection of the worker. A standalone service that sleeps
  notices `must_stop()` only when the sleep ends; keep naps short. Fractions are allowed
  (`sleep(0.5)`); negative, NaN and infinite durations are errors.
- `murmur.hashstr(v)`: MurmurHash3_x64_128 of `v` with seed 0, its first 64-bit half
  (h1) as 16 lowercase hex digits, most significant first. `murmur.hashnum(v)`: the same
  h1 masked to its low 53 bits, a non-negative integer that a Lua number (a double) holds
  exactly. A number `v` is hashed as its decimal text: an integral number as an integer
  ("42"), any other in Python's shortest round-trip form ("0.1", "1e+300"); a string
  as its bytes. The original LAppS hashed with libstdc++'s `std::hash` (not MurmurHash3),
  so the values differ from the original's, which were not portable anyway.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

_TIME_MODULE = (Path(__file__).parent / "time.lua").read_bytes()


def install_time(lua: Any) -> Any:
    """Build the `time` module table in `lua`."""
    def now() -> int:
        return time.time_ns() // 1_000_000
    return lua.execute(_TIME_MODULE, now, name="=time")


_NAP_MODULE = (Path(__file__).parent / "nap.lua").read_bytes()


def install_nap(lua: Any) -> Any:
    """Build the `nap` module table in `lua`: blocking sleeps, for standalone services."""
    def sleep(seconds: float) -> None:
        time.sleep(seconds)
    return lua.execute(_NAP_MODULE, sleep, name="=nap")


_MURMUR_MODULE = (Path(__file__).parent / "murmur.lua").read_bytes()

_MASK64 = (1 << 64) - 1
_MASK53 = (1 << 53) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F
_BLOCKS = struct.Struct("<QQ")


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK64
    return k ^ (k >> 33)


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """MurmurHash3_x64_128 (Austin Appleby's SMHasher `MurmurHash3.cpp`) of `data`.

    Returns `(h1, h2)`, the two 64-bit halves, as unsigned ints; the reference writes
    them to its output little-endian, h1 first. `seed` is a uint32 as in the reference.
    """
    m = _MASK64
    n = len(data)
    h1 = h2 = seed & 0xFFFFFFFF
    end = n - n % 16
    for k1, k2 in _BLOCKS.iter_unpack(data[:end]):
        k1 = (k1 * _C1) & m
        k1 = ((k1 << 31) | (k1 >> 33)) & m
        h1 ^= (k1 * _C2) & m
        h1 = ((h1 << 27) | (h1 >> 37)) & m
        h1 = ((h1 + h2) * 5 + 0x52DCE729) & m
        k2 = (k2 * _C2) & m
        k2 = ((k2 << 33) | (k2 >> 31)) & m
        h2 ^= (k2 * _C1) & m
        h2 = ((h2 << 31) | (h2 >> 33)) & m
        h2 = ((h2 + h1) * 5 + 0x38495AB5) & m
    tail = data[end:]
    if len(tail) > 8:
        k2 = (int.from_bytes(tail[8:], "little") * _C2) & m
        k2 = ((k2 << 33) | (k2 >> 31)) & m
        h2 ^= (k2 * _C1) & m
    if tail:
        k1 = (int.from_bytes(tail[:8], "little") * _C1) & m
        k1 = ((k1 << 31) | (k1 >> 33)) & m
        h1 ^= (k1 * _C2) & m
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & m
    h2 = (h2 + h1) & m
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    h1 = (h1 + h2) & m
    h2 = (h2 + h1) & m
    return h1, h2


def _key(v: bytes | int | float) -> bytes:
    if type(v) is bytes:
        return v
    # lupa hands integral numbers over as int ("42"); the rest are floats, written in
    # their shortest round-trip form ("0.1", "1e+300", "nan")
    return repr(v).encode()


def install_murmur(lua: Any) -> Any:
    """Build the `murmur` module table in `lua`."""
    def hashstr(v: bytes | int | float) -> bytes:
        return b"%016x" % murmur3_x64_128(_key(v))[0]

    def hashnum(v: bytes | int | float) -> int:
        return murmur3_x64_128(_key(v))[0] & _MASK53
    return lua.execute(_MURMUR_MODULE, hashstr, hashnum, name="=murmur")

#!/usr/bin/env python3
"""Summarise an Autobahn TestSuite fuzzingclient report (``index.json``).

Usage: ``summary.py [INDEX_JSON] [--allow-unimplemented PATTERNS]``
(default index: ``reports/autobahn/servers/index.json`` under the repo root).

Autobahn grades every case twice:

``behavior``
    What the server did with the frames it was sent.

``behaviorClose``
    How the connection ended: ``OK``, ``WRONG CODE`` (unexpected close code),
    ``FAILED BY CLIENT`` (the test client had to drop TCP itself), ``UNCLEAN``
    (no proper close handshake where the spec requires one), ``INFORMATIONAL``
    or ``FAILED`` (wrong endpoint failed the connection, or no handshake at all).

Both matter: a case counts as the worse of the two, mapped like Autobahn's own
HTML report colours them, on this scale (best first):

``OK``
    Behaved exactly as RFC 6455 requires.
``INFORMATIONAL``
    The spec leaves the outcome open (e.g. the close reason text); never a failure.
``NON-STRICT``
    Acceptable but not the strictest behaviour, e.g. invalid UTF-8 detected only
    once the whole message arrived instead of at the first bad fragment, or a
    ``WRONG CODE`` / ``FAILED BY CLIENT`` close. Not a failure.
``UNIMPLEMENTED``
    The server did not negotiate the feature the case tests (e.g. 12.*/13.*
    permessage-deflate). A failure unless the case matches ``--allow-unimplemented``.
``FAILED``
    A violation of the RFC, or an ``UNCLEAN`` / ``FAILED`` close. Always a failure.

Prints one line per case that is not OK (case id, behavior, behaviorClose), then
``autobahn: N OK, N NON-STRICT, N INFORMATIONAL, N UNIMPLEMENTED, N FAILED``.
Exits 1 on any failure as above, when the index holds no case at all, or when it
holds fewer than ``--expected-cases`` (wstest stops early when the server goes away), else 0.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

CATEGORIES: tuple[str, ...] = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
# Severity, best first; a case counts as the worse of behavior and behaviorClose.
RANK: dict[str, int] = {"OK": 0, "INFORMATIONAL": 1, "NON-STRICT": 2, "UNIMPLEMENTED": 3, "FAILED": 4}
BEHAVIOR: dict[str, str] = {
    "OK": "OK",
    "NON-STRICT": "NON-STRICT",
    "NO_CLOSE": "NON-STRICT",
    "INFORMATIONAL": "INFORMATIONAL",
    "UNIMPLEMENTED": "UNIMPLEMENTED",
}
BEHAVIOR_CLOSE: dict[str, str] = {
    "OK": "OK",
    "INFORMATIONAL": "INFORMATIONAL",
    "WRONG CODE": "NON-STRICT",
    "FAILED BY CLIENT": "NON-STRICT",
}
DEFAULT_INDEX = Path(__file__).resolve().parents[2] / "reports/autobahn/servers/index.json"


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort "9.10.2" after "9.2.1"."""
    return tuple(int(p) if p.isdigit() else -1 for p in case_id.split("."))


def classify(result: dict[str, Any]) -> str:
    """One category for a case from both of its behaviors (unknown values are FAILED)."""
    behavior = BEHAVIOR.get(str(result.get("behavior")), "FAILED")
    if behavior == "UNIMPLEMENTED":  # the close is not graded then, as in Autobahn's report
        return behavior
    close = BEHAVIOR_CLOSE.get(str(result.get("behaviorClose")), "FAILED")
    return max(behavior, close, key=RANK.__getitem__)


def summarise(
    index: dict[str, dict[str, dict[str, Any]]], allow_unimplemented: list[str], expected: int = 0
) -> int:
    """Print the report lines; return the exit status."""
    counts = dict.fromkeys(CATEGORIES, 0)
    bad = 0
    many_agents = len(index) > 1
    for agent in sorted(index):
        for case_id in sorted(index[agent], key=case_key):
            result = index[agent][case_id]
            category = classify(result)
            counts[category] += 1
            if category == "OK":
                continue
            failing = category == "FAILED" or (
                category == "UNIMPLEMENTED"
                and not any(fnmatch.fnmatchcase(case_id, p) for p in allow_unimplemented)
            )
            bad += failing
            prefix = f"{agent} " if many_agents else ""
            print(
                f"  {prefix}{case_id:<9} {category:<13} behavior={result.get('behavior')} "
                f"behaviorClose={result.get('behaviorClose')} "
                f"closeCode={result.get('remoteCloseCode')}{'  <-- FAIL' if failing else ''}"
            )
    print("autobahn: " + ", ".join(f"{counts[c]} {c}" for c in CATEGORIES))
    total = sum(counts.values())
    if total == 0:
        print("autobahn: ERROR: the report holds no case", file=sys.stderr)
        return 1
    if total < expected:
        print(f"autobahn: ERROR: only {total} of {expected} cases ran (did the server stop?)", file=sys.stderr)
        return 1
    if bad:
        print(f"autobahn: {bad} of {total} cases failed", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("index", nargs="?", type=Path, default=DEFAULT_INDEX)
    parser.add_argument(
        "--allow-unimplemented",
        default="",
        metavar="PATTERNS",
        help="comma-separated case patterns (e.g. '12.*,13.*') that may be UNIMPLEMENTED",
    )
    parser.add_argument(
        "--expected-cases",
        type=int,
        default=0,
        metavar="N",
        help="fail when the report holds fewer than N cases",
    )
    args = parser.parse_args(argv)
    try:
        index = json.loads(args.index.read_text())
    except (OSError, ValueError) as exc:
        print(f"autobahn: ERROR: cannot read {args.index}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(index, dict) or not all(isinstance(v, dict) for v in index.values()):
        print(f"autobahn: ERROR: {args.index} is not an Autobahn index.json", file=sys.stderr)
        return 1
    allowed = [p.strip() for p in args.allow_unimplemented.split(",") if p.strip()]
    return summarise(index, allowed, args.expected_cases)


if __name__ == "__main__":
    sys.exit(main())

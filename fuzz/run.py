"""Run the fuzz targets of fuzz/targets.py for a bounded time.

    python fuzz/run.py TARGET [--seconds N] [--corpus DIR]    # one target
    python fuzz/run.py all --seconds N                        # each target N seconds, in turn
    python fuzz/run.py TARGET --replay FILE                   # run one input, show the traceback
    python fuzz/run.py --list

Engine: atheris (coverage-guided libFuzzer) when it imports, else a hypothesis-driven
mutation fuzzer over the same targets (`--engine` forces one). Each target runs in its own
child process. The seed corpus fuzz/corpus/TARGET/ is read only; inputs that reach new
coverage go to the working corpus, fuzz/work/TARGET/ by default (`--corpus DIR`), so a
later run starts from them. Exit status: 0 when no target crashed, 1 when one did, 2 on a
usage or setup error.

On a crash the input is written to fuzz/crashes/TARGET-crash-<sha1>, next to it
`.min` (a smaller input raising the same exception at the same line, found by a bounded
delta-debugging pass) and `.txt` (the traceback and the command that replays it).
fuzz/work/ and fuzz/crashes/ are git-ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NAMES = ("handshake", "frames", "utf8", "lapps_message", "client_frames")
CRASHES = HERE / "crashes"
WORK = HERE / "work"
SEEDS = HERE / "corpus"
DICTS = HERE / "dicts"
MAX_LEN = {"handshake": 12288, "frames": 8192, "utf8": 4096, "lapps_message": 4096, "client_frames": 8192}
"""Longest input each target is given: past the limits the targets exercise (head 8192,
message 4096), not much more (longer inputs only slow each execution down)."""
RSS_LIMIT_MB = 2048
INPUT_TIMEOUT_S = 10


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _seed_files(target: str) -> list[Path]:
    folder = SEEDS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- children

def _child_atheris(target: str, seconds: int, corpus: Path) -> None:
    """libFuzzer via atheris, our modules instrumented. Never returns (atheris exits)."""
    import atheris

    with atheris.instrument_imports(include=["lapps", "fuzz"]):
        from fuzz import targets
    fn = targets.TARGETS[target]
    CRASHES.mkdir(parents=True, exist_ok=True)
    corpus.mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], f"-max_total_time={seconds}", f"-max_len={MAX_LEN[target]}",
            f"-artifact_prefix={CRASHES}/{target}-", f"-timeout={INPUT_TIMEOUT_S}",
            f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1", "-print_pcs=0"]
    dictionary = DICTS / f"{target}.dict"
    if dictionary.is_file():
        args.append(f"-dict={dictionary}")
    args += [str(corpus), str(SEEDS / target)]
    atheris.Setup(args, fn)
    atheris.Fuzz()


def _child_hypothesis(target: str, seconds: int, corpus: Path) -> int:
    """Fallback engine: hypothesis draws inputs (fuzz/strategies.py: structured, seeds and
    working-corpus entries with random edits, random bytes) for `seconds`, in rounds; a
    failure is shrunk by hypothesis and the shrunk input written as the crash. No coverage
    feedback, so it finds less than atheris in the same time."""
    from hypothesis import HealthCheck, Phase, given, settings

    from fuzz import strategies, targets

    fn = targets.TARGETS[target]
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = [p.read_bytes() for p in _seed_files(target)]
    seeds += [p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()]
    inputs = strategies.inputs(target, seeds, MAX_LEN[target])
    state = {"execs": 0, "last_failure": None}

    @settings(max_examples=500, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(inputs)
    def one(data: bytes) -> None:
        state["execs"] += 1
        try:
            fn(data)
        except BaseException:
            state["last_failure"] = data
            raise

    start = time.monotonic()
    rounds = 0
    while time.monotonic() - start < seconds:
        rounds += 1
        try:
            one()
        except Exception:   # any exception out of a target is the crash we are looking for
            data = state["last_failure"]
            CRASHES.mkdir(parents=True, exist_ok=True)
            path = CRASHES / f"{target}-crash-{hashlib.sha1(data).hexdigest()}"
            path.write_bytes(data)
            traceback.print_exc()
            print(f"==hypothesis== crash: wrote {path}", flush=True)
            return 1
    elapsed = time.monotonic() - start
    print(f"stat::number_of_executed_units: {state['execs']}")
    print(f"stat::average_exec_per_sec: {int(state['execs'] / max(elapsed, 1e-9))}")
    print(f"==hypothesis== {rounds} rounds, no crash", flush=True)
    return 0


# ---------------------------------------------------------------------------- replay and minimize

def _failure(fn, data: bytes) -> tuple[str, str, int] | None:
    """(exception type, file, line of the innermost frame) when `fn(data)` raises, else None."""
    try:
        fn(data)
    except Exception as e:   # the signature of whatever the target lets out
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return type(e).__name__, tb.filename, tb.lineno
    return None


def minimize(fn, data: bytes, budget_s: float = 30.0) -> bytes:
    """A smaller input with the same failure signature: remove chunks (halving their size),
    then try to zero single bytes, within `budget_s`."""
    sig = _failure(fn, data)
    if sig is None:
        return data
    deadline = time.monotonic() + budget_s
    best = data
    size = max(1, len(best) // 2)
    while size >= 1 and time.monotonic() < deadline:
        pos = 0
        while pos < len(best) and time.monotonic() < deadline:
            candidate = best[:pos] + best[pos + size:]
            if _failure(fn, candidate) == sig:
                best = candidate
            else:
                pos += size
        size //= 2
    for i in range(len(best)):
        if time.monotonic() >= deadline:
            break
        if best[i] not in (0, 0x20, 0x30):
            for b in (0x30, 0x20, 0):
                candidate = best[:i] + bytes([b]) + best[i + 1:]
                if _failure(fn, candidate) == sig:
                    best = candidate
                    break
    return best


def replay(target: str, path: Path) -> int:
    from fuzz import targets

    data = path.read_bytes()
    print(f"replaying {len(data)} bytes: {data[:200]!r}{'...' if len(data) > 200 else ''}", flush=True)
    try:
        targets.TARGETS[target](data)
    except Exception:   # show whatever the target let out; that is the point of a replay
        traceback.print_exc()
        return 1
    print("no failure")
    return 0


def _write_report(target: str, crash: Path, log_tail: str) -> None:
    from fuzz import targets

    data = crash.read_bytes()
    small = minimize(targets.TARGETS[target], data)
    min_path = crash.with_name(crash.name + ".min")
    min_path.write_bytes(small)
    try:
        targets.TARGETS[target](small)
        trace = "(the input no longer fails when replayed outside the fuzzer)\n"
    except Exception:   # the traceback goes into the report
        trace = traceback.format_exc()
    text = (f"target: {target}\ninput: {_rel(crash)} ({len(data)} bytes)\n"
            f"minimized: {_rel(min_path)} ({len(small)} bytes): {small[:300]!r}\n\n"
            f"replay:\n  {_rel(Path(sys.executable))} fuzz/run.py {target} --replay {_rel(min_path)}\n\n"
            f"traceback (minimized input):\n{trace}\nfuzzer output (tail):\n{log_tail}\n")
    crash.with_name(crash.name + ".txt").write_text(text)
    print(text[:text.index("fuzzer output (tail):")].rstrip() + f"\n(report: {_rel(crash)}.txt)")


# ---------------------------------------------------------------------------- parent

_STATS = {
    "execs": re.compile(r"stat::number_of_executed_units:\s+(\d+)"),
    "exec_s": re.compile(r"stat::average_exec_per_sec:\s+(\d+)"),
    "cov": re.compile(r"\bcov: (\d+)"),
    "ft": re.compile(r"\bft: (\d+)"),
    "corpus": re.compile(r"\bcorp: (\d+)"),
}


def run_target(target: str, seconds: int, corpus: Path, engine: str, quiet: bool) -> int:
    """Run one target in a child process; 0 when it ran clean, 1 on a crash."""
    before = set(CRASHES.glob(f"{target}-*")) if CRASHES.is_dir() else set()
    WORK.mkdir(parents=True, exist_ok=True)
    log_path = WORK / f"{target}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), target, "--child", "--engine", engine,
           "--seconds", str(seconds), "--corpus", str(corpus)]
    print(f"== {target}: {engine}, {seconds} s, corpus {_rel(corpus)} + {_rel(SEEDS / target)}", flush=True)
    started = time.monotonic()
    lines: list[str] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if not quiet or not line.startswith("#"):
                sys.stdout.write(line)
                sys.stdout.flush()
        rc = proc.wait()
    elapsed = time.monotonic() - started
    text = "".join(lines)
    found = {k: (rx.findall(text) or ["?"])[-1] for k, rx in _STATS.items()}
    crashes = sorted(p for p in (set(CRASHES.glob(f"{target}-*")) - before)
                     if not p.name.endswith((".min", ".txt")))
    print(f"== {target}: rc {rc}, {elapsed:.0f} s, execs {found['execs']}, exec/s {found['exec_s']}, "
          f"cov {found['cov']}, ft {found['ft']}, corpus {found['corpus']}, crashes {len(crashes)}, "
          f"log {_rel(log_path)}", flush=True)
    if rc == 0 and not crashes:
        return 0
    for crash in crashes:
        _write_report(target, crash, "".join(lines[-40:]))
    if not crashes:
        print(f"== {target}: the fuzzer exited {rc} without writing a crash input; see {_rel(log_path)}")
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", nargs="?", choices=(*NAMES, "all"))
    ap.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    ap.add_argument("--corpus", type=Path, help="working corpus folder (default fuzz/work/TARGET)")
    ap.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    ap.add_argument("--replay", type=Path, metavar="FILE", help="run the target once on FILE")
    ap.add_argument("--quiet", action="store_true", help="hide libFuzzer's progress lines")
    ap.add_argument("--list", action="store_true", help="list the targets")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(NAMES))
        return 0
    if not args.target:
        ap.error("name a target, or all")
    if args.replay:
        if args.target == "all":
            ap.error("--replay needs one target")
        return replay(args.target, args.replay)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _has_atheris() else "hypothesis"
    elif engine == "atheris" and not _has_atheris():
        print("atheris is not installed (pip install atheris)", file=sys.stderr)
        return 2
    if args.child:
        corpus = args.corpus
        if engine == "atheris":
            _child_atheris(args.target, args.seconds, corpus)
        return _child_hypothesis(args.target, args.seconds, corpus)
    if engine == "hypothesis":
        print("atheris not available: using the hypothesis fallback engine (no coverage feedback)",
              flush=True)
    names = NAMES if args.target == "all" else (args.target,)
    if args.corpus and len(names) > 1:
        ap.error("--corpus names one target's working corpus; use it with one target")
    failed = []
    for name in names:
        corpus = args.corpus or WORK / name
        if run_target(name, args.seconds, corpus.resolve(), engine, args.quiet):
            failed.append(name)
    if len(names) > 1:
        print(f"== fuzz: {len(names) - len(failed)} of {len(names)} targets clean"
              + (f"; crashed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

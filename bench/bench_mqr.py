"""mqr throughput: the original LAppS pair (one mqr_sender posting in a loop, two mqr_receiver
instances) on the real server, against a peer doing the same work with Python's own
multiprocessing.Queue (one producer process, two consumer processes, the same CBOR message
encoded and decoded), in alternating rounds. Figures are messages delivered per second,
summed over both receivers, median of the per-second counts of each round, then the median
of the rounds.

    python bench/bench_mqr.py [--rounds 3] [--seconds 5]

There is no load client here: every process belongs to the system measured, so nothing is
pinned; both get the machine's cores in turn. The sender and the receivers are the
original's files when ../shared/original-lapps exists, else services of the same shape
written by this script.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cbor2
import toml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import LappsServer, free_port, log, save_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ORIGINAL = REPO.parent / "shared" / "original-lapps" / "examples"
MESSAGE = {"message": ["Hello World", "PAYLOAD" + "X" * 95]}   # the original sender's message
LINE = re.compile(r"service (mqr_receiver#\d+)\] INFO \[mqr_receiver\] Received (\d+) messages per (\d+)ms")

SENDER = """
local s = {}
s.queue = mqr.create("testpipe")
function s.init() end
function s.run()
  local hw = nljson.decode('{"message": ["Hello World", "PAYLOAD%s"]}')
  while not must_stop() do s.queue:post(hw) end
end
return s
""" % ("X" * 95)
RECEIVER = """
local r = {n = 0, t = 0}
r.queue = mqr.create("testpipe")
function r.init() r.t = time.now() end
function r.run()
  while not must_stop() do
    r.queue:recv()
    r.n = r.n + 1
    local slice = time.now() - r.t
    if slice >= 1000 then
      print("Received " .. r.n .. " messages per " .. slice .. "ms")
      r.n, r.t = 0, time.now()
    end
  end
end
return r
"""


def services(root: Path) -> Path:
    """The services folder: the original's pair, or ours of the same shape."""
    folder = root / "services"
    for name, source in (("mqr_sender", SENDER), ("mqr_receiver", RECEIVER)):
        (folder / name).mkdir(parents=True)
        original = ORIGINAL / name / f"{name}.lua"
        (folder / name / f"{name}.lua").write_text(original.read_text() if original.is_file() else source)
    return folder


def lapps_round(seconds: float) -> float:
    """Messages per second delivered by the server's pair (median of its per-second lines)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = {
            "server": {"ip": "127.0.0.1", "port": free_port(), "workers": 1, "listeners": 1,
                       "services_dir": str(services(root)), "shutdown_timeout": 2},
            "admin": {"port": 0},
            "services": {"mqr_sender": {"standalone": True, "preload": ["mqr"]},
                         "mqr_receiver": {"standalone": True, "instances": 2, "preload": ["mqr", "time"],
                                          "depends": ["mqr_sender"]}},
        }
        (root / "lapps.toml").write_text(toml.dumps(config))
        server = LappsServer.start(root / "lapps.toml", config["server"]["port"], root / "server.log", tied=True)
        try:
            server.wait_ready(path=None)   # no /echo here: the worker's ready line is enough
            time.sleep(1.0 + seconds)      # one warm second, then the measured ones
        finally:
            server.stop()
        per_second: dict[int, int] = {}
        for line in server.log().splitlines():
            m = LINE.search(line)
            if m:
                second = int(time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")))
                per_second[second] = per_second.get(second, 0) + int(int(m.group(2)) * 1000 / int(m.group(3)))
        counts = [per_second[s] for s in sorted(per_second)][1:-1]   # drop the warm-up and the last
        return statistics.median(counts) if counts else 0.0


def _produce(q: mp.Queue, stop: mp.Event) -> None:
    data = MESSAGE
    while not stop.is_set():
        q.put(cbor2.dumps(data))


def _consume(q: mp.Queue, stop: mp.Event, counts: mp.Array, i: int) -> None:
    n = 0
    while not stop.is_set():
        cbor2.loads(q.get())
        n += 1
        if n % 1000 == 0:
            counts[i] += 1000


def peer_round(seconds: float) -> float:
    """Messages per second through multiprocessing.Queue, 1 producer and 2 consumers."""
    q: mp.Queue = mp.Queue(maxsize=100_000)
    stop = mp.Event()
    counts = mp.Array("q", 2)
    procs = [mp.Process(target=_produce, args=(q, stop))] + [
        mp.Process(target=_consume, args=(q, stop, counts, i)) for i in (0, 1)]
    for p in procs:
        p.start()
    time.sleep(1.0)
    start, begin = sum(counts), time.monotonic()
    time.sleep(seconds)
    done, elapsed = sum(counts), time.monotonic() - begin
    stop.set()
    for p in procs:
        p.terminate()
        p.join(2)
    return (done - start) / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    where = "the original's files" if (ORIGINAL / "mqr_sender").is_dir() else "services of the same shape"
    log(f"bench_mqr: 1 sender, 2 receivers ({where}); {args.rounds} alternating rounds x {args.seconds:g} s")
    lapps, peer = [], []
    for r in range(args.rounds):
        lapps.append(lapps_round(args.seconds))
        peer.append(peer_round(args.seconds))
        log(f"  round {r + 1}: LAppS mqr {lapps[-1]:,.0f}/s, multiprocessing.Queue {peer[-1]:,.0f}/s")
    a, b = statistics.median(lapps), statistics.median(peer)
    log("\n| | messages/s (median) | LAppS ÷ peer |\n|---|---|---|")
    log(f"| LAppS mqr (original pair) | {a:,.0f} | |")
    log(f"| multiprocessing.Queue, 1 → 2 processes | {b:,.0f} | {a / b:.2f}× |" if b else "| peer | 0 | |")
    save_results(REPO / "bench" / "results" / "mqr.json",
                 {"rounds": args.rounds, "seconds": args.seconds, "lapps": lapps, "peer": peer,
                  "lapps_median": a, "peer_median": b, "services": where})
    return 0


if __name__ == "__main__":
    sys.exit(main())

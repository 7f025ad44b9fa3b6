"""Logging: one line per event, with the time, the level and the process name.

`configure()` runs once in the master (stderr or a file, text or JSON lines); forked
children inherit the handler and call `name_process()` so their lines say which process
wrote them. `reopen_logs()` is SIGUSR1's job: after logrotate moved the file, every
process opens the path again. `RepeatLimiter` bounds what can fire per message, post or
connection (refusals, full queues, slow consumers, the fault barrier): nothing logs once per
message, and a flood of bad clients costs a few lines per interval.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

_TEXT = "%(asctime)s.%(msecs)03d lapps[{name}] %(levelname)s %(message)s"
_DATE = "%Y-%m-%d %H:%M:%S"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time, level, process, logger, message."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, _DATE) + f".{int(record.msecs):03d}",
                 "level": record.levelname, "process": self.process_name,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _formatter(process_name: str, json_lines: bool) -> logging.Formatter:
    if json_lines:
        return JsonFormatter(process_name)
    return logging.Formatter(_TEXT.format(name=process_name), _DATE)


def configure(process_name: str, level: str | int = "INFO", file: str | None = None,
              json_lines: bool = False) -> None:
    """Set up the root logger of the master: stderr, or `file` (appended), text or JSON."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler = logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(process_name, json_lines))
    root.addHandler(handler)
    root.setLevel(level)


def name_process(process_name: str) -> None:
    """In a forked child: keep the inherited handlers, stamp lines with its own name."""
    for h in logging.getLogger().handlers:
        h.setFormatter(_formatter(process_name, isinstance(h.formatter, JsonFormatter)))


def reopen_logs() -> None:
    """Reopen every log file (SIGUSR1, after a rotation); stderr needs nothing."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.acquire()
            try:
                h.close()
                h.stream = h._open()
            finally:
                h.release()


REPEAT_INTERVAL = 10.0
"""Seconds a `RepeatLimiter` key stays quiet after a line, before the count of its repeats."""


class RepeatLimiter:
    """Log lines that can fire once per message, post or connection, at a bounded rate.

    Per key (what makes two events "the same": a site, a queue, a refusal kind), the first
    event is logged at once; the ones that follow within `interval` are only counted, and one
    line per interval then says how many there were (with the last one's text). A flood of
    bad clients or a stuck consumer thus costs a few lines a minute, not one per event, and
    nothing goes unsaid. The count line is written by the next event of that key after its
    interval, or by `flush()`, which the owner's periodic tick calls (the worker's sweep, a
    listener's accept timeout). Thread-safe: the master's listener threads share one.
    """

    def __init__(self, log: logging.Logger, interval: float = REPEAT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        # key -> [end of its quiet window, events counted in it, level, msg, args of the last]
        self._quiet: dict[Hashable, list[Any]] = {}

    def info(self, key: Hashable, msg: str, *args: Any) -> None:
        self.log_event(logging.INFO, key, msg, args)

    def warning(self, key: Hashable, msg: str, *args: Any, exc_info: Any = None) -> None:
        self.log_event(logging.WARNING, key, msg, args, exc_info)

    def error(self, key: Hashable, msg: str, *args: Any, exc_info: Any = None) -> None:
        self.log_event(logging.ERROR, key, msg, args, exc_info)

    def log_event(self, level: int, key: Hashable, msg: str, args: tuple, exc_info: Any = None) -> None:
        """One event of `key`: logged now (the first of a window) or counted."""
        now = self.clock()
        with self._lock:
            entry = self._quiet.get(key)
            if entry is not None and now < entry[0]:
                entry[1] += 1
                entry[2:] = level, msg, args
                return
            self._quiet[key] = [now + self.interval, 0, level, msg, args]
        if entry is not None and entry[1]:
            self._summary(entry)
        self.log.log(level, msg, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Write the count line of every key whose quiet window has passed, and forget it."""
        now = self.clock()
        with self._lock:
            done = [k for k, e in self._quiet.items() if now >= e[0]]
            ended = [self._quiet.pop(k) for k in done]
        for entry in ended:
            if entry[1]:
                self._summary(entry)

    def _summary(self, entry: list[Any]) -> None:
        _, count, level, msg, args = entry
        self.log.log(level, msg + " [%d more like this in %gs]", *args, count, self.interval)

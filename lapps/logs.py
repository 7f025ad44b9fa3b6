"""Logging: one line per event, with the time, the level and the process name.

`configure()` runs once in the master (stderr or a file, text or JSON lines); forked
children inherit the handler and call `name_process()` so their lines say which process
wrote them. `reopen_logs()` is SIGUSR1's job: after logrotate moved the file, every
process opens the path again.
"""

from __future__ import annotations

import json
import logging
import sys

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

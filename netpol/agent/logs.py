"""Structured logs: one line per event, as JSON (for collectors) or key=value text (for people).

Call sites pass their fields as `extra={"fields": {...}}` so both formats carry the same data.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

LogFormat = Literal["json", "text"]


def _fields(record: logging.LogRecord) -> dict:
    return dict(getattr(record, "fields", None) or {})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        pairs = " ".join(f"{k}={_quote(v)}" for k, v in _fields(record).items())
        line = f"{ts} {record.levelname.lower():7} {record.getMessage()}" + (f"  {pairs}" if pairs else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' ="')) else text


def configure(fmt: LogFormat = "text", level: str = "INFO", stream=None) -> logging.Handler:
    """Send netpol's logs to stderr in one format; `unconfigure(handler)` undoes it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger = logging.getLogger("netpol")
    for old in [h for h in logger.handlers if getattr(h, "_netpol_agent", False)]:
        logger.removeHandler(old)
    handler._netpol_agent = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler


def unconfigure(handler: logging.Handler) -> None:
    logger = logging.getLogger("netpol")
    logger.removeHandler(handler)
    if not any(getattr(h, "_netpol_agent", False) for h in logger.handlers):
        logger.propagate = True

"""Logging filter that keeps feedback text and personal data out of every log line.

Feedback text reaches a log through exception messages: a database error quoting a value, a library error
repeating its input, Celery's "Task … raised unexpected: ValueError('…')". So exception messages are
withheld (the type and the stack stay), except for exceptions about the infrastructure (network, broker),
whose messages name hosts and ports, not user data. What is left is PII-masked as texts are."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from labeling.pii import mask_pii

WITHHELD = "(message withheld: it may quote user text)"
# Roots of modules whose exceptions describe connections and queues, never user data.
INFRASTRUCTURE_MODULES = {"redis", "kombu", "amqp", "celery", "billiard"}
# Machine tokens of log lines that PII patterns would misread (a task id's hex digits, "0.013812345678s"): kept.
_MACHINE_TOKENS = re.compile(
    r"(\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|(?<![\w.])\d+\.\d+(?:[eE]-?\d+)?(?![\d.]))"
)
# Shorter exception texts ("1", "'x'") are too common to search for in a message.
MIN_QUOTED_CHARS = 4


def _is_infrastructure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in INFRASTRUCTURE_MODULES


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def exception_line(exc: BaseException) -> str:
    if _is_infrastructure(exc):
        return "".join(traceback.format_exception_only(exc)).strip()
    return f"{_type_name(exc)}: {WITHHELD}"


def redacted_traceback(exc: BaseException) -> str:
    """The traceback as `logging` prints it, with each exception's message withheld."""
    parts: list[str] = []
    for index, current in enumerate(reversed(list(_chain(exc)))):
        if index:
            parts.append("\nThe above exception led to the following exception:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(current.__traceback__))
        parts.append(exception_line(current) + "\n")
    return "".join(parts).rstrip("\n")


def _arg_values(args: Any) -> list[Any]:
    if isinstance(args, Mapping):
        return list(args.values())
    if isinstance(args, tuple):
        return list(args)
    return []


def mask_log_text(text: str) -> str:
    """mask_pii on everything but ids and decimal numbers."""
    pieces = _MACHINE_TOKENS.split(text)
    # split() with one group alternates: text, token, text, token, ...
    return "".join(piece if index % 2 else mask_pii(piece) for index, piece in enumerate(pieces))


class RedactUserText(logging.Filter):
    """Attach to every handler (settings.LOGGING, and Celery's handlers in sceneclf_site.celery)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: leave it to the formatter to report
            return True
        raised = record.exc_info[1] if record.exc_info and record.exc_info[1] is not None else None
        exceptions = [value for value in _arg_values(record.args) if isinstance(value, BaseException)]
        if raised is not None:
            exceptions.append(raised)
        for exc in [link for top in exceptions for link in _chain(top)]:
            if _is_infrastructure(exc):
                continue
            for quoted in {repr(exc), str(exc)}:
                if len(quoted) >= MIN_QUOTED_CHARS:
                    message = message.replace(quoted, exception_line(exc))
        record.msg, record.args = mask_log_text(message), None
        if raised is not None:
            record.exc_text = mask_log_text(redacted_traceback(raised))
        return True

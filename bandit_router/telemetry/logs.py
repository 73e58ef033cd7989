"""Logging setup: JSON lines or plain text, with secrets redacted before anything is written.

Redaction is a handler filter rather than a logger filter because logger filters do not run
for records propagated from child loggers (``bandit_router.store.redis_store`` -> root); a
handler filter sees every record the handler writes. It rewrites the record itself (message,
``extra`` fields, exception text) so no formatter, including a third party's, can see the secret.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

REDACTED: Final = "[REDACTED]"

#: Field names whose values are never logged (``extra={"token": ...}``, metadata keys).
SECRET_KEY = re.compile(
    r"(?i)(token|secret|passw(or)?d|pwd|authorization|api[-_]?key|credential|cookie|private[-_]?key)"
)

_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # user:password@ in URLs (redis://, rediss://, http://...): keep the user, hide the password.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]*@"), rf"\1:{REDACTED}@"),
    # Authorization headers / metadata in any spelling: the scheme and credential both go.
    (
        re.compile(
            r"(?i)(\bauthorization['\"]?\s*[:=,]\s*\(?['\"]?)(?:(?:bearer|basic|token)\s+)?[^\s'\",;)]+"
        ),
        rf"\1{REDACTED}",
    ),
    # Bearer tokens anywhere else in free text.
    (re.compile(r"(?i)\b(bearer\s+)[a-z0-9\-._~+/]+=*"), rf"\1{REDACTED}"),
    # key=value / key: value / "key": "value" for secret-looking keys.
    (
        re.compile(
            r"(?i)(\b[\w-]*(?:token|secret|passw(?:or)?d|pwd|api[-_]?key)[\w-]*['\"]?\s*[:=]\s*['\"]?)"
            r"[^\s'\",;&}]+"
        ),
        rf"\1{REDACTED}",
    ),
)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


#: How many characters of one client-supplied value a log line keeps (then its length).
MAX_LOGGED_CHARS: Final = 128


def clip(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """``value`` as text of at most ``limit`` characters, plus its length when cut.

    A refused call logs what it was sent; unbounded, one 3 MB experiment name from an
    unauthenticated caller would add 3 MB to the log.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"


def redact_text(text: str) -> str:
    """``text`` with bearer tokens, Authorization values and URL/field passwords replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, key: str | None = None) -> Any:
    """Redact a structured value: secret-named keys lose their value, strings are scrubbed."""
    if key is not None and SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # gRPC metadata is a sequence of (key, value) pairs.
        if len(value) == 2 and isinstance(value[0], str) and SECRET_KEY.search(value[0]):
            return (value[0], REDACTED)
        return (
            type(value)(redact_value(v) for v in value)
            if isinstance(value, tuple)
            else [redact_value(v) for v in value]
        )
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact_text(str(value))


class RedactingFilter(logging.Filter):
    """Scrubs a record in place; never drops it (a lost log line is worse than a redacted one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log the template, still redacted
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for name in list(vars(record)):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, redact_value(getattr(record, name), name))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra={...}`` fields of a record (experiment, decision_id, ...)."""
    return {
        k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            entry.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # default=str: an odd extra (a Decimal, an enum) must not lose the whole line.
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain text for humans, with extra fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = extra_fields(record)
        if extras:
            head, sep, tail = line.partition("\n")
            fields = " ".join(f"{k}={v}" for k, v in extras.items())
            line = f"{head} {fields}{sep}{tail}"
        return line


_HANDLER_MARK: Final = "_bandit_router_handler"


def configure_logging(
    level: str = "INFO", json_lines: bool = False, stream: TextIO | None = None
) -> logging.Handler:
    """Route all logging through one redacting handler on the root logger; idempotent.

    Calling it again (e.g. after a config reload) replaces the handler it installed before
    instead of adding a second one, which would print every line twice.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level: unknown level {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonLinesFormatter() if json_lines else TextFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    return handler

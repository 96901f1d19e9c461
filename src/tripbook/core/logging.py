"""structlog for everything: JSON lines in production, key=value on a terminal.

tripbook's own loggers are structlog-native: the processors render the line and
``StdoutLogger`` writes it, with no stdlib ``LogRecord`` in between (the access line is
written once per request, so this is on the hot path). The standard library's loggers
(gunicorn, uvicorn, celery, sqlalchemy) are routed through the same processors by
``ProcessorFormatter``, so every line, whoever writes it, has one shape and carries the
request id.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import threading
from typing import Any

import orjson
import structlog
from asgi_correlation_id import correlation_id
from structlog.types import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from tripbook.settings import Settings

SENSITIVE_KEYS = frozenset(
    {"password", "token", "access_token", "authorization", "payment_token", "jwt", "secret"}
)


def add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    request_id = correlation_id.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # A last line of defence: no code should log these, but if it does they never leave.
    for key in SENSITIVE_KEYS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


class StdoutLogger:
    """Writes each rendered line to ``sys.stdout`` as it is at the time of the call.

    Unlike structlog's ``WriteLogger``, which keeps the stream it was created with, this one
    follows a ``sys.stdout`` replaced later (a test's capture), since loggers are cached on
    first use. One ``write`` per line, under a lock, so threads never interleave lines.
    """

    _lock = threading.Lock()

    def __init__(self, name: str = "") -> None:
        self.name = name  # for ``add_logger_name``, as on a stdlib logger

    def msg(self, message: str) -> None:
        stream = sys.stdout
        with self._lock:
            stream.write(message + "\n")
            stream.flush()

    debug = info = warning = error = critical = exception = log = msg


def _dumps(event_dict: EventDict, default: Any) -> str:
    # orjson is several times faster than json; non-string keys and unknown types must
    # still render, since a log call may never fail.
    return orjson.dumps(event_dict, default=default, option=orjson.OPT_NON_STR_KEYS).decode()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def _renderers(settings: Settings) -> list[Processor]:
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stdout.isatty()
    )
    if use_json:
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(_dumps)]
    return [structlog.dev.ConsoleRenderer(colors=False)]  # formats exceptions itself


def configure_logging(settings: Settings) -> None:
    shared = _shared_processors()
    renderers = _renderers(settings)
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *renderers],
        logger_factory=StdoutLogger,  # get_logger(name) → StdoutLogger(name)
        wrapper_class=structlog.make_filtering_bound_logger(settings.log_level),
        cache_logger_on_first_use=True,
    )
    formatter: dict[str, Any] = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [*shared, structlog.stdlib.ExtraAdder()],
        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
    }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"structlog": formatter},
            "handlers": {
                "stdout": {
                    "class": "logging.StreamHandler",
                    "formatter": "structlog",
                    "stream": "ext://sys.stdout",
                }
            },
            "root": {"handlers": ["stdout"], "level": settings.log_level},
            "loggers": {
                # Our access line replaces uvicorn's; gunicorn's and uvicorn's own lines
                # propagate to the root handler and so share its format.
                "uvicorn.access": {"handlers": [], "propagate": False},
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
                "gunicorn.error": {"handlers": [], "propagate": True},
                "gunicorn.access": {"handlers": [], "propagate": False},
                "celery": {"handlers": [], "propagate": True},
                "sqlalchemy.engine": {"level": "WARNING"},
                "httpx": {"level": "WARNING"},
                "httpcore": {"level": "WARNING"},
            },
        }
    )


def get_logger(name: str) -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger

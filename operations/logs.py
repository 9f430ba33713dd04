"""Log lines with the request they belong to (issue 18, item 5).

`RequestContextMiddleware` sets the request id, the account's public id and the API key's
prefix (its key id, never the secret) in context variables; `RequestContextFilter` copies them
onto every log record of that request, and `JsonFormatter` writes one JSON object per line when
LOG_FORMAT=json.
"""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
account_var: ContextVar[str | None] = ContextVar("account", default=None)
key_prefix_var: ContextVar[str | None] = ContextVar("key_prefix", default=None)

_CONTEXT = (
    ("request_id", request_id_var),
    ("account", account_var),
    ("key_prefix", key_prefix_var),
)
# Attributes every LogRecord has; anything else on a record came from `extra=` and is kept.
_STANDARD = (
    set(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
    | {"message", "asctime"}
    | {name for name, _ in _CONTEXT}
)


class RequestContextFilter(logging.Filter):
    """Put the current request's id, account and key prefix on each record (None outside)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request context, any
    `extra=` fields, and the traceback as text."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in _CONTEXT:
            value = getattr(record, name, None) or var.get()
            if value:
                line[name] = value
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in line and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)

"""Log lines never carry secrets: a filter on every handler rewrites what would.

What counts as a secret in a message is the caller's to say (`redact`, e.g. the credential in a
device's topic); query strings (download URL signatures) are cut from uvicorn's access lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

ACCESS_LOGGER = "uvicorn.access"


class SecretsFilter(logging.Filter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == ACCESS_LOGGER and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            record.args = (client, method, str(path).split("?", 1)[0], version, status)
            return True
        message = record.getMessage()
        cleaned = self._redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


def install(redact: Callable[[str], str], logger_names: tuple[str, ...] = ("", "uvicorn", ACCESS_LOGGER)) -> None:
    """Put the filter on every handler of these loggers (handlers see records from child loggers too)."""
    secrets_filter = SecretsFilter(redact)
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(secrets_filter)

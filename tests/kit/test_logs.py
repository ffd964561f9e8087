"""The secrets filter rewrites log records before any handler formats them."""

from __future__ import annotations

import logging
import sys

from skylift.devices.topics import redact
from skylift.kit.logs import ACCESS_LOGGER, SecretsFilter


def record(name: str, msg: str, args: tuple[object, ...] | None) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_a_message_naming_a_token_topic_is_redacted() -> None:
    entry = record("skylift.broker", "device %s may not publish on %s", (3, "/ota/device/progress/s3cr3t"))
    assert SecretsFilter(redact).filter(entry)
    assert entry.getMessage() == "device 3 may not publish on /ota/device/progress/***"


def test_access_lines_lose_their_query_string() -> None:
    args = ("127.0.0.1:5000", "GET", "/dl/7/fw.bin?expires=1&signature=abc", "1.1", 200)
    entry = record(ACCESS_LOGGER, '%s - "%s %s HTTP/%s" %d', args)
    assert SecretsFilter(redact).filter(entry)
    assert entry.getMessage() == '127.0.0.1:5000 - "GET /dl/7/fw.bin HTTP/1.1" 200'


def test_a_traceback_is_redacted_too() -> None:
    try:
        raise ValueError("bad payload on /ota/device/inform/s3cr3t")
    except ValueError:
        entry = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    SecretsFilter(redact).filter(entry)
    assert entry.exc_text is not None
    assert "s3cr3t" not in entry.exc_text

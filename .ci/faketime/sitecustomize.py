"""Loaded by every Python process of the shifted-date test run (PYTHONPATH points here).

Debian's libfaketime 0.9.10 turns Python 3.11's time.sleep into EINVAL when the monotonic clock is
not faked (its clock_nanosleep wrapper shifts an absolute monotonic deadline by the fake offset,
libfaketime issue 426); faking the monotonic clock instead hangs every timed lock wait. So the
monotonic clock stays real and time.sleep waits with select(), which the library leaves alone.
"""

from __future__ import annotations

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep

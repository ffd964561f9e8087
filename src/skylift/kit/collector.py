"""Python's cyclic garbage collector, tuned for a server that holds thousands of device connections.

With the defaults (a young collection every 700 net allocations) a connecting fleet grows the heap fast
enough to set off a full collection each time the long-lived objects grow by a quarter: during a
10,000-device fan-out on PostgreSQL (bench/fanout.py) the server ran 27 full collections of about 0.4 s
each, 13.4 s of its 48.8 s CPU time in the collector. Young collections every 10,000 allocations let
short-lived objects die young instead of being promoted, and what the process built before serving
(modules, classes, settings) is frozen out of every collection: one full collection in that run, and
the last notice out after 4.2-4.7 s instead of 6.9-8.8 s (bench/RESULTS.md).
"""

from __future__ import annotations

import gc

# Allocations between young collections; young collections per middle one; middle ones per full one.
THRESHOLDS = (10_000, 20, 10)


def tune_for_serving() -> None:
    """Call once, just before serving: everything alive now lives as long as the process."""
    gc.set_threshold(*THRESHOLDS)
    gc.collect()
    gc.freeze()

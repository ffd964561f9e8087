"""Counters an operator scrapes at /metrics (Prometheus text format)."""

from __future__ import annotations

from prometheus_client import Counter

DEVICE_MESSAGES = Counter("skylift_device_messages", "Device MQTT messages handled", ["kind"])
MALFORMED_MESSAGES = Counter("skylift_device_malformed_messages", "Device MQTT messages refused as malformed", ["kind"])
DROPPED_MESSAGES = Counter("skylift_device_dropped_messages", "Device messages dropped", ["reason"])
NOTICES_SENT = Counter("skylift_notices_sent", "Upgrade notices handed to the broker")
STORAGE_SWEPT_FILES = Counter("skylift_storage_swept_files", "Leftovers swept from package storage at start", ["kind"])
STORAGE_SWEPT_BYTES = Counter(
    "skylift_storage_swept_bytes", "Bytes of the leftovers swept from package storage", ["kind"]
)

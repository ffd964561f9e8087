"""Counters an operator scrapes at /metrics (Prometheus text format)."""

from __future__ import annotations

from prometheus_client import Counter

DEVICE_MESSAGES = Counter("skylift_device_messages", "Device MQTT messages handled", ["kind"])
MALFORMED_MESSAGES = Counter("skylift_device_malformed_messages", "Device MQTT messages refused as malformed", ["kind"])
REFUSED_MESSAGES = Counter(
    "skylift_device_refused_messages", "Device MQTT messages refused before they were acknowledged", ["reason"]
)
PAUSED_READS = Counter(
    "skylift_device_reads_paused", "Times a device's connection was left unread until its queued messages were applied"
)
APPLIED_MESSAGES = Counter("skylift_device_messages_applied", "Device MQTT messages recorded in the inbox and applied")
NOTICES_SENT = Counter("skylift_notices_sent", "Upgrade notices handed to the broker")
NOTICES_DROPPED = Counter("skylift_notices_dropped", "Due notices that could not be composed", ["reason"])
STORAGE_SWEPT_FILES = Counter("skylift_storage_swept_files", "Leftovers swept from package storage at start", ["kind"])
STORAGE_SWEPT_BYTES = Counter(
    "skylift_storage_swept_bytes", "Bytes of the leftovers swept from package storage", ["kind"]
)
REFUSED_CONNECTIONS = Counter(
    "skylift_mqtt_refused_connections", "MQTT connections refused or closed by the broker's limits", ["reason"]
)
SLOWED_READS = Counter(
    "skylift_mqtt_slowed_reads", "Times a device's connection was read more slowly for its message rate"
)

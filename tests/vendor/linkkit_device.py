"""A device application built on Alibaba's Python Link SDK (`aliyun-iot-linkkit`), run against Skylift.

It runs inside a virtualenv that holds the SDK (the SDK needs paho-mqtt 1.x, the tests use 2.x) and
uses the SDK the way Alibaba's OTA demo does: it never subscribes to anything itself (the SDK logs in
with `_ss=1` and expects the platform to subscribe it), it reports its version with
`ota_report_version`, it learns of its upgrade through `on_ota_message_arrived` (a pushed notice, or
the reply to `query_ota_firmware`), and it downloads and checks the file with `download_ota_firmware`.

The SDK has no call for upgrade progress; with `--progress alink` the application reports it with the
SDK's `publish_topic`, in Alibaba's documented `/ota/device/progress` form (0 before the download, 100
once the file is downloaded and its digest matched, -2 when the download failed, -3 when the digest
did not match). With `--progress none` it reports nothing, as Alibaba's demo. After a good download
the device "reboots": the SDK object is torn down, a new one logs in and reports the new version.

The SDK 1.2.13 has no MQTT block download (`thing/file/download`), and drops a notice without `url`:
`--mode mqtt-blocks` says so and exits 3.

stdout: one JSON object per line, `{"event": ..., "t": seconds since start, ...}`. The SDK's own log
goes to stderr. Once the new version is reported the device stays online until stdin reaches its end
(or `--timeout` passes). Exit status: 0 upgraded, 1 failed, 2 timed out, 3 unsupported mode.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from linkkit import linkkit

STARTED = time.monotonic()
OUTPUT_LOCK = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """One line of what happened, flushed at once so that a watching test sees it now."""
    line = json.dumps({"event": event, "t": round(time.monotonic() - STARTED, 3), **fields}, default=str)
    with OUTPUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Failed(Exception):
    """The upgrade cannot go on; the message says at which stage."""


@dataclass(frozen=True)
class OtaNotice:
    """What `on_ota_message_arrived` hands the application (type 1: pushed, 2: answer to a query)."""

    notice_type: int
    version: str
    size: Any
    url: str
    sign_method: str
    sign: str
    module: str
    extra: str


class Device:
    """One device: its credentials, its firmware version, and the SDK object of its current boot."""

    def __init__(self, args: argparse.Namespace, deadline: float) -> None:
        self.args = args
        self.deadline = deadline
        self.topic_id = f"{args.product_key}/{args.device_name}"
        self.notices: queue.Queue[OtaNotice] = queue.Queue()
        self.connected = threading.Event()
        self.kit: Any = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    # --- the SDK's callbacks (they run on the SDK's own thread) ---------------------------------------

    def _on_connect(self, session_flag: int, rc: int, _userdata: Any) -> None:
        emit("connected", rc=rc, session_present=session_flag)
        if rc == 0:
            self.connected.set()

    def _on_disconnect(self, rc: int, _userdata: Any) -> None:
        self.connected.clear()
        emit("disconnected", rc=rc)

    def _on_ota_message_arrived(
        self, notice_type: int, version: str, size: Any, url: str, sign_method: str, sign: str, module: str, extra: str
    ) -> None:
        notice = OtaNotice(notice_type, version, size, url, sign_method, sign, module, extra)
        emit("notice", **asdict(notice))
        # A long download must not block the SDK's thread: the application does it on its own.
        self.notices.put(notice)

    # --- what the application does --------------------------------------------------------------------

    def boot(self, version: str) -> None:
        """Log in with the SDK (TCP, no TLS) and report the running version, as at every start."""
        kit = linkkit.LinkKit(
            host_name=self.args.host,
            product_key=self.args.product_key,
            device_name=self.args.device_name,
            device_secret=self.args.device_secret,
        )
        kit.enable_logger(logging.INFO)
        kit.config_mqtt(
            port=self.args.port,
            secure="",
            endpoint=self.args.host,
            keep_alive=60,
            auto_reconnect_min_sec=1,
            auto_reconnect_max_sec=2,
        )
        kit.on_connect = self._on_connect
        kit.on_disconnect = self._on_disconnect
        kit.on_ota_message_arrived = self._on_ota_message_arrived
        self.kit = kit
        self.connected.clear()
        kit.connect_async()
        if not self.connected.wait(self.remaining()):
            raise Failed("connect: no successful CONNACK (refused login, or no broker)")
        # Its return code is no help: the SDK compares paho's MQTTMessageInfo with 0, so it always
        # says OTA_PUB_FAILED although the message went out (Alibaba's demo ignores it too).
        rc = kit.ota_report_version(None, version)
        emit("version_reported", version=version, rc=_code(rc))

    def shut_down(self) -> None:
        if self.kit is not None:
            self.kit.destruct()
            self.kit = None

    def query(self) -> None:
        rc = self.kit.query_ota_firmware()  # the same always-failed return code as ota_report_version
        emit("query_sent", rc=_code(rc))

    def wait_notice(self) -> OtaNotice:
        try:
            return self.notices.get(timeout=self.remaining())
        except queue.Empty:
            raise Failed("notice: none reached on_ota_message_arrived") from None

    def progress(self, step: int, desc: str, module: str) -> None:
        """The SDK has no progress call: the application publishes Alibaba's progress message itself."""
        if self.args.progress == "none":
            return
        params: dict[str, Any] = {"step": str(step), "desc": desc}
        if module and module != "default":
            params["module"] = module
        body = json.dumps({"id": str(int(time.time() * 1000)), "params": params})
        rc, _mid = self.kit.publish_topic(f"/ota/device/progress/{self.topic_id}", body, 1)
        emit("progress", step=step, desc=desc, rc=rc)

    def download(self, notice: OtaNotice, workdir: Path) -> Path:
        """The SDK's own download: urllib GET of the url, then its digest check of the whole file."""
        target = workdir / f"firmware-{notice.version}.bin"
        self.progress(0, "download started", notice.module)
        rc = self.kit.download_ota_firmware(notice.url, str(target), notice.sign_method, notice.sign)
        size = target.stat().st_size if target.exists() else None
        emit("downloaded", rc=_code(rc), bytes=size, expected_size=notice.size, sign_method=notice.sign_method)
        codes = linkkit.LinkKit.ErrorCode
        if rc == codes.SUCCESS:
            if size != int(notice.size):
                self.progress(-3, f"size {size} is not {notice.size}", notice.module)
                raise Failed(f"download: {size} bytes, the notice said {notice.size}")
            self.progress(100, "downloaded and verified", notice.module)
            return target
        if rc in (codes.OTA_DIGEST_MISMATCH, codes.OTA_INVALID_SIGN_METHOD):
            self.progress(-3, f"verification failed: {rc.name}", notice.module)
        else:
            self.progress(-2, f"download failed: {rc.name}", notice.module)
        raise Failed(f"download_ota_firmware returned {rc}")


def _code(rc: Any) -> Any:
    return rc.name if isinstance(rc, linkkit.LinkKit.ErrorCode) else rc


def run(device: Device, args: argparse.Namespace, workdir: Path) -> None:
    device.boot(args.version)
    if args.mode == "query":
        device.query()
    notice = device.wait_notice()
    if notice.version == args.version:
        raise Failed(f"notice for the version already running: {notice.version}")
    device.download(notice, workdir)
    emit("rebooting", into=notice.version)
    device.shut_down()
    device.boot(notice.version)
    emit("upgraded", version=notice.version, module=notice.module)


def _watchdog(seconds: float) -> None:
    def expire() -> None:
        emit("timeout", after=seconds)
        os._exit(2)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="the broker's plain MQTT port")
    parser.add_argument("--product-key", required=True)
    parser.add_argument("--device-name", required=True)
    parser.add_argument("--device-secret", required=True)
    parser.add_argument("--mode", choices=["push", "query", "mqtt-blocks"], default="push")
    parser.add_argument("--version", required=True, help="the firmware version the device runs at start")
    parser.add_argument("--progress", choices=["alink", "none"], default="alink")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up (exit 2) after this many seconds")
    parser.add_argument("--workdir", type=Path, default=None, help="where the firmware is stored")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _watchdog(args.timeout + 5)
    emit("started", mode=args.mode, version=args.version, progress=args.progress)
    if args.mode == "mqtt-blocks":
        emit("unsupported", reason="linkkit has no MQTT block download; it drops a notice without url")
        return 3
    device = Device(args, deadline=time.monotonic() + args.timeout)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        try:
            run(device, args, workdir)
        except Failed as failure:
            emit("failed", reason=str(failure))
            device.shut_down()
            return 1
        # Stay online, as a device does, until told to stop (stdin ends) or the time is up.
        reader = threading.Thread(target=sys.stdin.read, daemon=True)
        reader.start()
        reader.join(device.remaining())
        device.shut_down()
        emit("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

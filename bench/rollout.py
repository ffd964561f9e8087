"""Fleet rollout benchmark: one campaign to N simulated MQTT devices through a real server.

Starts the real `skylift serve` (with upload_download.py's helpers), registers a product and `--devices`
devices, uploads a `--size-kb` KiB package, connects every device with paho-mqtt (token login, subscribed
to its upgrade topic, reporting version 1.0.0), then creates a campaign and times it end to end: notices,
downloads (checked against the notice's MD5), progress and version reports, until the campaign is
finished. Prints rates, latency percentiles and the server's CPU time and memory.

    python bench/rollout.py --devices 50
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from swarm import Peer, Swarm, new_client
from upload_download import (
    BenchError,
    RssSampler,
    Server,
    check,
    proc_status_kib,
    report_failure,
    start_server,
    stop_server,
    wait_healthy,
)

KIB = 1024
MIB = 1024 * 1024
OLD_VERSION = "1.0.0"
# The list API's largest page: one page holds every device of a run.
MAX_PAGE = 1000
NEW_VERSION = "2.0.0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_INTERVAL_S = 0.2
IDLE_SAMPLE_S = 2.0
# A management call (POST /campaigns notifies the whole first group inside the request) may take a while.
API_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


# ---------------------------------------------------------------- one simulated device


@dataclass
class SimDevice(Peer):
    """A registered device and what happened to it, timed with `time.perf_counter()` on the bench side.

    It is settled once connected, subscribed and its first version report is acknowledged."""

    index: int
    device_id: int
    token: str
    ready_at: float | None = None
    notice: dict[str, Any] | None = None
    notices: int = 0
    notice_at: float | None = None
    notice_wall: float | None = None  # time.time(), to compare with the server's notified_at
    download_started: float | None = None
    downloaded_at: float | None = None
    step100_acked_at: float | None = None
    done_at: float | None = None  # final version report acknowledged by the broker
    pending: dict[int, str] = field(default_factory=dict)  # MQTT message id -> what it was

    @property
    def upgrade_topic(self) -> str:
        return f"/ota/device/upgrade/{self.token}"


# ---------------------------------------------------------------- MQTT: many clients per thread


class MqttShard(Swarm[SimDevice]):
    """A share of the simulated devices on one MQTT thread (see swarm.py)."""

    def __init__(
        self,
        name: str,
        devices: Sequence[SimDevice],
        mqtt_port: int,
        on_notice: Callable[[MqttShard, SimDevice], None],
    ) -> None:
        super().__init__(name, devices, mqtt_port)
        self.devices = self.peers
        self._on_notice = on_notice
        self.duplicate_notices = 0
        self.unexpected_messages = 0

    def make_client(self, peer: SimDevice) -> mqtt.Client:
        return new_client(f"bench-{peer.index}", peer.token)

    def on_connect(self, client: mqtt.Client, peer: SimDevice) -> None:
        client.subscribe(peer.upgrade_topic, qos=1)

    def on_subscribe(self, client: mqtt.Client, peer: SimDevice) -> None:
        topic = f"/ota/device/inform/{peer.token}"
        self.publish(peer, topic, {"id": "1", "params": {"version": OLD_VERSION}}, "inform-old")

    def on_message(self, peer: SimDevice, message: mqtt.MQTTMessage) -> None:
        if message.topic != peer.upgrade_topic:
            self.unexpected_messages += 1
            return
        now, wall = time.perf_counter(), time.time()
        peer.notices += 1
        if peer.notices > 1:
            self.duplicate_notices += 1  # the server promises one notice per attempt
            return
        try:
            peer.notice = json.loads(message.payload)
        except ValueError as exc:
            peer.fail(f"notice is not JSON: {exc}")
            return
        peer.notice_at, peer.notice_wall = now, wall
        self._on_notice(self, peer)

    def on_publish(self, peer: SimDevice, mid: int) -> None:
        what = peer.pending.pop(mid, None)
        now = time.perf_counter()
        if what == "inform-old":
            peer.ready_at = now
            self.settle(peer)
        elif what == "step-100":
            peer.step100_acked_at = now
        elif what == "inform-new":
            peer.done_at = now

    # -- device actions (on this thread)

    def publish(self, device: SimDevice, topic: str, body: dict[str, Any], what: str = "") -> None:
        """QoS 1; `what` names the message so that its PUBACK can be timed."""
        assert device.client is not None
        info = device.client.publish(topic, json.dumps(body).encode(), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            device.fail(f"publish on {topic}: {mqtt.error_string(info.rc)}")
        device.pending[info.mid] = what

    def progress(self, device: SimDevice, step: int, desc: str, what: str = "") -> None:
        if self.is_live(device):
            self.publish(device, f"/ota/device/progress/{device.token}", {"step": str(step), "desc": desc}, what)

    def finish(self, device: SimDevice) -> None:
        """Flashed: report success, then the new version."""
        if not self.is_live(device):
            return
        self.progress(device, 100, "ok", "step-100")
        topic = f"/ota/device/inform/{device.token}"
        self.publish(device, topic, {"id": "2", "params": {"version": NEW_VERSION}}, "inform-new")


# ---------------------------------------------------------------- the fleet: shards plus download workers


def expected_md5(params: dict[str, Any]) -> str:
    """Token notices carry `sign` with `signMethod: Md5`; product-key and MQTT notices also carry `md5`."""
    if params.get("md5"):
        return str(params["md5"]).lower()
    if str(params.get("signMethod", "")).lower() == "md5" and params.get("sign"):
        return str(params["sign"]).lower()
    raise BenchError(f"notice has no MD5 to check the download against: {params}")


class Fleet:
    def __init__(self, devices: list[SimDevice], mqtt_port: int, threads: int, workers: int) -> None:
        self.devices = devices
        self.http = httpx.Client(
            timeout=DOWNLOAD_TIMEOUT,
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
        self.shards = [MqttShard(f"mqtt-{n}", devices[n::threads], mqtt_port, self._on_notice) for n in range(threads)]

    def start(self) -> None:
        for shard in self.shards:
            shard.start()

    def close(self) -> list[str]:
        """Disconnect every client and stop every thread; returns what could not be stopped."""
        errors = []
        for shard in self.shards:
            try:
                shard.stop()
            except BenchError as exc:
                errors.append(str(exc))
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()
        return errors

    def count(self, predicate: Callable[[SimDevice], object]) -> int:
        return sum(1 for device in self.devices if predicate(device))

    def raise_if_failed(self) -> None:
        for shard in self.shards:
            if shard.crash is not None:
                raise BenchError(f"MQTT thread {shard.name} crashed: {shard.crash!r}") from shard.crash
        failed = [device for device in self.devices if device.error is not None]
        if failed:
            first = failed[0]
            raise BenchError(f"{len(failed)} device(s) failed; first, device #{first.index}: {first.error}")

    @property
    def duplicate_notices(self) -> int:
        return sum(shard.duplicate_notices for shard in self.shards)

    @property
    def unexpected_messages(self) -> int:
        return sum(shard.unexpected_messages for shard in self.shards)

    def _on_notice(self, shard: MqttShard, device: SimDevice) -> None:
        self.pool.submit(self._download, shard, device)

    def _download(self, shard: MqttShard, device: SimDevice) -> None:
        """On a worker thread: fetch the URL, report 50 % half-way, check the MD5, then report success."""
        try:
            assert device.notice is not None
            params = device.notice["params"]
            url, size, md5 = str(params["url"]), int(params["size"]), expected_md5(params)
            digest = hashlib.md5(usedforsecurity=False)
            received = 0
            halfway = False
            device.download_started = time.perf_counter()
            with self.http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise BenchError(f"GET {url}: HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    received += len(chunk)
                    if not halfway and received * 2 >= size:
                        halfway = True
                        shard.call(functools.partial(shard.progress, device, 50, "downloading"))
            device.downloaded_at = time.perf_counter()
            if received != size or digest.hexdigest() != md5:
                shard.call(functools.partial(shard.progress, device, -3, "md5 mismatch"))
                device.fail(f"download: {received} bytes with MD5 {digest.hexdigest()}, notice says {size} / {md5}")
                return
            shard.call(functools.partial(shard.finish, device))
        except Exception as exc:
            device.fail(f"download: {type(exc).__name__}: {exc}")


def wait_for(fleet: Fleet, what: str, timeout: float, condition: Callable[[], tuple[bool, str]]) -> float:
    """Poll `condition` (done, progress text) until done; fail on a device error or after `timeout` seconds."""
    deadline = time.perf_counter() + timeout
    while True:
        fleet.raise_if_failed()
        done, progress = condition()
        if done:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what} ({progress})")
        time.sleep(0.02)


# ---------------------------------------------------------------- server figures


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state); utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def metric_sum(text: str, name: str) -> float | None:
    """The sum over labels of one metric in Prometheus text format, or None when it is absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


# ---------------------------------------------------------------- statistics and formatting


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def secs(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"


def spread(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {secs(percentile(values, 50))}  p95 {secs(percentile(values, 95))}  "
        f"max {secs(max(values))}  (n={len(values)})"
    )


def per_second(count: float, seconds: float, unit: str) -> str:
    return f"{secs(seconds):>10}   {count / seconds if seconds > 0 else math.inf:9.2f} {unit}"


Section = tuple[str, list[tuple[str, str]]]


def print_report(title: str, sections: list[Section]) -> None:
    width = max(len(name) for _, rows in sections for name, _ in rows) + 2
    rule = "-" * (width + 62)
    print(rule)
    print(title)
    for heading, rows in sections:
        print(rule)
        print(heading)
        for name, value in rows:
            print(f"  {name:<{width}}{value}")
    print(rule)


# ---------------------------------------------------------------- the run


@dataclass
class Options:
    devices: int
    size: int
    max_per_minute: int | None
    groups: list[float] | None
    mqtt_threads: int
    workers: int
    timeout: float


def register_devices(api: httpx.Client, product_id: int, count: int) -> list[SimDevice]:
    def create(index: int) -> SimDevice:
        body = {"product_id": product_id, "name": f"bench-{index:05d}"}
        device = check(api.post("/devices", json=body), 201, "POST /devices").json()
        return SimDevice(index=index, device_id=int(device["id"]), token=str(device["access_token"]))

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="register") as pool:
        return list(pool.map(create, range(count)))


def upload_package(api: httpx.Client, product_id: int, size: int) -> dict[str, Any]:
    firmware = os.urandom(size)
    data = {"product_id": str(product_id), "name": f"bench {NEW_VERSION}", "version": NEW_VERSION, "sign_method": "MD5"}
    files = {"file": ("firmware.bin", firmware, "application/octet-stream")}
    package: dict[str, Any] = check(api.post("/packages", data=data, files=files), 201, "POST /packages").json()
    if package["files"][0]["md5"] != hashlib.md5(firmware, usedforsecurity=False).hexdigest():
        raise BenchError("server reports another MD5 than the uploaded firmware's")
    return package


def run(server: Server, opts: Options) -> tuple[str, list[Section], list[str]]:
    pid = server.process.pid
    n = opts.devices
    notes: list[str] = []
    rss_start = proc_status_kib(pid, "VmRSS")
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=f"{server.base_url}/api/v1", headers=headers, timeout=API_TIMEOUT) as api:
        product = check(api.post("/products", json={"name": "bench-rollout"}), 201, "POST /products").json()
        product_id = int(product["id"])

        started = time.perf_counter()
        devices = register_devices(api, product_id, n)
        register_s = time.perf_counter() - started
        package = upload_package(api, product_id, opts.size)

        fleet = Fleet(devices, int(server.mqtt_port), opts.mqtt_threads, opts.workers)
        try:
            # ------------------------------------------------ connect the fleet
            rss_before_connect, cpu_before_connect = proc_status_kib(pid, "VmRSS"), cpu_seconds(pid)
            started = time.perf_counter()
            fleet.start()
            wait_for(
                fleet,
                "devices to connect, subscribe and report their version",
                30 + 0.1 * n,
                lambda: (fleet.count(lambda d: d.ready_at) == n, f"{fleet.count(lambda d: d.ready_at)}/{n} ready"),
            )
            connect_s = time.perf_counter() - started

            def online() -> tuple[bool, str]:
                rows = check(
                    api.get("/devices", params={"product_id": product_id, "limit": MAX_PAGE}), 200, "GET /devices"
                ).json()
                good = sum(1 for d in rows["items"] if d["online"] and OLD_VERSION in d["versions"].values())
                return good == n, f"{good}/{n} online with version {OLD_VERSION}"

            wait_for(fleet, "the server to see every device online with its version", 30, online)
            visible_s = time.perf_counter() - started
            rss_connected, cpu_connected = proc_status_kib(pid, "VmRSS"), cpu_seconds(pid)
            time.sleep(IDLE_SAMPLE_S)  # what the server burns with the fleet connected and nothing to do
            idle_cpu = cpu_seconds(pid) - cpu_connected
            cpu_connected += idle_cpu
            threads_connected, fds_connected = proc_status_kib(pid, "Threads"), open_fds(pid)

            # ------------------------------------------------ the campaign
            body: dict[str, Any] = {"name": "bench rollout", "package_id": package["id"]}
            if opts.groups:
                body["groups"] = opts.groups
            if opts.max_per_minute:
                body["max_per_minute"] = opts.max_per_minute
            client_cpu0 = client_cpu_seconds()
            with RssSampler(pid) as rollout_rss:
                t0 = time.perf_counter()
                response = api.post("/campaigns", json=body)
                created_s = time.perf_counter() - t0
                campaign_id = int(check(response, 201, "POST /campaigns").json()["id"])
                finished_s: float | None = None
                last_state: dict[str, Any] = {}
                next_poll = 0.0
                deadline = t0 + opts.timeout
                peak_threads = threading.active_count()
                while True:
                    fleet.raise_if_failed()
                    now = time.perf_counter()
                    if finished_s is None and now >= next_poll:
                        next_poll = now + POLL_INTERVAL_S
                        last_state = check(api.get(f"/campaigns/{campaign_id}"), 200, "GET /campaigns/{id}").json()
                        if last_state["state"] == "finished":
                            finished_s = time.perf_counter() - t0
                        elif last_state["state"] not in ("scheduled", "running"):
                            raise BenchError(
                                f"campaign is {last_state['state']} ({last_state['paused_reason']}): "
                                f"counts {last_state['counts']}, failures {last_state['failure_reasons']}"
                            )
                    done = fleet.count(lambda d: d.done_at)
                    if finished_s is not None and done == n:
                        break
                    if now > deadline:
                        raise BenchError(
                            f"rollout not done after {opts.timeout:.0f} s: campaign {last_state.get('state')} "
                            f"{last_state.get('counts')}; notices {fleet.count(lambda d: d.notice_at)}/{n}, "
                            f"downloads {fleet.count(lambda d: d.downloaded_at)}/{n}, reports done {done}/{n}"
                        )
                    peak_threads = max(peak_threads, threading.active_count())
                    time.sleep(0.01)
                cpu_finished = cpu_seconds(pid)

                def versions_applied() -> tuple[bool, str]:
                    url = f"/products/{product_id}/versions"
                    got = check(api.get(url, params={"module": "default"}), 200, f"GET {url}").json()["versions"]
                    return got.get(NEW_VERSION, 0) == n, f"versions {got}"

                wait_for(fleet, "the server to apply every new version report", 30, versions_applied)
                applied_s = time.perf_counter() - t0
            client_cpu = client_cpu_seconds() - client_cpu0
            rss_end, hwm = proc_status_kib(pid, "VmRSS"), proc_status_kib(pid, "VmHWM")
            client_hwm = proc_status_kib("self", "VmHWM")

            campaign = check(api.get(f"/campaigns/{campaign_id}"), 200, "GET /campaigns/{id}").json()
            rows = check(
                api.get(f"/campaigns/{campaign_id}/devices", params={"limit": MAX_PAGE}),
                200,
                "GET /campaigns/{id}/devices",
            ).json()
            metrics_text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        finally:
            close_errors = fleet.close()
    if close_errors:
        raise BenchError("; ".join(close_errors))

    # ------------------------------------------------ checks
    succeeded = campaign["counts"].get("succeeded", 0)
    if campaign["state"] != "finished" or succeeded != n:
        raise BenchError(
            f"campaign {campaign['state']}: {succeeded}/{n} succeeded, counts {campaign['counts']}, "
            f"failures {campaign['failure_reasons']}"
        )
    if fleet.duplicate_notices:
        notes.append(f"{fleet.duplicate_notices} duplicate upgrade notice(s) received (expected one per device)")
    if fleet.unexpected_messages:
        notes.append(f"{fleet.unexpected_messages} message(s) on unexpected topics")
    notices_metric = metric_sum(metrics_text, "skylift_notices_sent_total")
    refused = metric_sum(metrics_text, "skylift_device_refused_messages_total") or 0
    malformed = metric_sum(metrics_text, "skylift_device_malformed_messages_total") or 0
    if notices_metric is not None and notices_metric != n:
        notes.append(f"server metric skylift_notices_sent_total = {notices_metric:g}, devices received {n}")
    if refused or malformed:
        notes.append(f"server refused {refused:g} device messages, and {malformed:g} as malformed")

    # ------------------------------------------------ figures
    notice_at = [d.notice_at - t0 for d in devices if d.notice_at is not None]
    downloaded_at = [d.downloaded_at - t0 for d in devices if d.downloaded_at is not None]
    download_s = [
        d.downloaded_at - d.download_started
        for d in devices
        if d.downloaded_at is not None and d.download_started is not None
    ]
    to_step100 = [
        d.step100_acked_at - d.notice_at for d in devices if d.step100_acked_at is not None and d.notice_at is not None
    ]
    wall_by_id = {d.device_id: d.notice_wall for d in devices}
    delivery_lag: list[float] = []
    notice_to_success: list[float] = []
    for row in rows["items"]:
        notified, finished = parse_time(row["notified_at"]), parse_time(row["finished_at"])
        received = wall_by_id.get(row["device_id"])
        if notified is not None and received is not None:
            delivery_lag.append(received - notified)
        if notified is not None and finished is not None:
            notice_to_success.append(finished - notified)
    all_notices_s, all_downloads_s = max(notice_at), max(downloaded_at)
    first_download = min(d.download_started for d in devices if d.download_started is not None) - t0
    total_mib = n * opts.size / MIB
    server_started, server_finished = parse_time(campaign["started_at"]), parse_time(campaign["finished_at"])
    server_campaign_s = server_finished - server_started if server_started and server_finished else math.nan
    assert finished_s is not None
    rollout_cpu = cpu_finished - cpu_connected
    connect_cpu = cpu_connected - idle_cpu - cpu_before_connect

    def mib(kib: int) -> str:
        return f"{kib / 1024:6.1f} MiB"

    groups = ",".join(f"{g:g}" for g in opts.groups) if opts.groups else "none"
    title = (
        f"Skylift rollout: {n} devices, {opts.size / KIB:g} KiB firmware, groups: {groups}, "
        f"max_per_minute: {opts.max_per_minute or 'unlimited'}"
    )
    sections: list[Section] = [
        (
            "setup",
            [
                ("register devices (POST /devices, 8 at a time)", per_second(n, register_s, "devices/s")),
                ("connect + subscribe + report version (MQTT)", per_second(n, connect_s, "devices/s")),
                ("... until GET /devices shows all online", f"{secs(visible_s):>10}"),
                ("bench MQTT threads / download workers", f"{opts.mqtt_threads} / {opts.workers}"),
            ],
        ),
        (
            "rollout (t = 0 when POST /campaigns is sent)",
            [
                ("POST /campaigns answered", f"{secs(created_s):>10}"),
                ("all notices received", per_second(n, all_notices_s, "notices/s")),
                ("all downloads done (MD5 checked)", per_second(total_mib, all_downloads_s, "MiB/s aggregate")),
                (
                    "  downloads, first start -> last end",
                    per_second(total_mib, all_downloads_s - first_download, "MiB/s aggregate"),
                ),
                ("campaign 'finished' (seen by polling)", per_second(n, finished_s, "devices/s")),
                ("campaign finished_at - started_at (server)", f"{secs(server_campaign_s):>10}"),
                ("all version reports applied", f"{secs(applied_s):>10}"),
                ("result", f"{succeeded}/{n} succeeded, failures {campaign['failure_reasons'] or 'none'}"),
            ],
        ),
        (
            "per device",
            [
                ("notice latency (t = 0 -> notice received)", spread(notice_at)),
                ("server notified_at -> notice received", spread(delivery_lag)),
                ("download time", spread(download_s)),
                ("notice -> succeeded (server timestamps)", spread(notice_to_success)),
                ("notice received -> step 100 PUBACK (bench)", spread(to_step100)),
            ],
        ),
        (
            f"server (pid {pid})",
            [
                (
                    "CPU during connect phase",
                    f"{connect_cpu:8.2f} s   {connect_cpu / n * 1000:8.2f} s per 1000 devices",
                ),
                ("CPU idle, all connected (2 s sample)", f"{idle_cpu / IDLE_SAMPLE_S:10.1%} of one core"),
                (
                    "CPU during rollout (t = 0 -> finished)",
                    f"{rollout_cpu:8.2f} s   {rollout_cpu / n * 1000:8.2f} s per 1000 devices  "
                    f"({rollout_cpu / finished_s:.0%} of one core)",
                ),
                ("RSS at start", mib(rss_start)),
                ("RSS before connect (devices registered)", mib(rss_before_connect)),
                ("RSS with all devices connected", mib(rss_connected)),
                ("RSS max during rollout", f"{mib(rollout_rss.max_kib)}   ({rollout_rss.samples} samples)"),
                ("RSS at end", mib(rss_end)),
                ("VmHWM (peak)", mib(hwm)),
                ("RSS per connected device", f"{(rss_connected - rss_before_connect) / n:6.1f} KiB"),
                ("(VmHWM - RSS at start) per device", f"{(hwm - rss_start) / n:6.1f} KiB"),
                ("threads / open fds, all connected", f"{threads_connected} / {fds_connected}"),
                (
                    "notices sent / refused / malformed (/metrics)",
                    f"{'n/a' if notices_metric is None else f'{notices_metric:g}'} / {refused:g} / {malformed:g}",
                ),
            ],
        ),
        (
            "bench client",
            [
                ("CPU during rollout", f"{client_cpu:8.2f} s   ({client_cpu / applied_s:.0%} of one core)"),
                ("threads (peak) / VmHWM", f"{peak_threads} / {mib(client_hwm).strip()}"),
            ],
        ),
    ]
    return title, sections, notes


def parse_groups(text: str) -> list[float]:
    try:
        groups = [float(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"groups are comma-separated percents, e.g. 10,50,100 ({exc})") from exc
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=300, help="simulated devices (default: 300)")
    parser.add_argument("--size-kb", type=int, default=256, help="firmware size in KiB (default: 256)")
    parser.add_argument("--max-per-minute", type=int, default=None, help="campaign pacing (default: unlimited)")
    parser.add_argument("--groups", type=parse_groups, default=None, help="staged groups, e.g. 10,50,100")
    parser.add_argument("--mqtt-threads", type=int, default=None, help="threads driving the MQTT clients")
    parser.add_argument("--download-workers", type=int, default=16, help="download threads (default: 16)")
    parser.add_argument("--timeout", type=float, default=None, help="rollout time limit in s (default: scaled)")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.size_kb < 1 or args.download_workers < 1:
        parser.error("--devices, --size-kb and --download-workers must be at least 1")
    if args.devices > MAX_PAGE:
        parser.error(f"--devices is at most {MAX_PAGE} (one page of the device list)")
    if args.max_per_minute is not None and args.max_per_minute < 1:
        parser.error("--max-per-minute must be at least 1")
    pacing_s = math.ceil(args.devices / args.max_per_minute) * 60 if args.max_per_minute else 0
    opts = Options(
        devices=args.devices,
        size=args.size_kb * KIB,
        max_per_minute=args.max_per_minute,
        groups=args.groups,
        mqtt_threads=args.mqtt_threads or max(1, min(4, math.ceil(args.devices / 100))),
        workers=args.download_workers,
        timeout=args.timeout or 60 + 0.2 * args.devices + pacing_s,
    )

    root = Path(tempfile.mkdtemp(prefix="skylift-rollout-"))
    server: Server | None = None
    try:
        server = start_server(root)
        wait_healthy(server)
        title, sections, notes = run(server, opts)
        stop_server(server)  # flush its last words before reading them
        # Expected here: the server warns that download URLs point at 127.0.0.1 (SKYLIFT_PUBLIC_URL unset).
        log_lines = [
            line
            for line in server.log_path.read_text(errors="replace").splitlines()
            if "SKYLIFT_PUBLIC_URL is not set" not in line
        ]
        sections[3][1].append(("log lines (WARNING+, besides PUBLIC_URL)", f"{len(log_lines):>10}"))
    except Exception as exc:
        return report_failure(exc, server)
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
    print_report(title, sections)
    for note in notes:
        print(f"note: {note}")
    if log_lines:
        print(f"--- server log ({len(log_lines)} lines, last 20) ---")
        print("\n".join(log_lines[-20:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fan-out: a campaign over a connected fleet, from the POST to the last notice received and to all succeeded.

For each size in `--fleets`, first the reference: a bare amqtt broker (the broker Skylift embeds, alone)
relays one notice-sized QoS 1 message to each of as many subscribed devices, sent by one client as fast
as the broker takes them. Then the real `skylift serve`: the devices are registered, connect (token
login, subscribed to their upgrade topic, version 1.0.0 reported and applied), a package is uploaded,
and the clock starts at `POST /campaigns`. Each device answers its notice with step 100 (a token device
succeeds at 100; no download, this is the notice path). Prints when the POST returned, when the last
notice arrived (notices/s), when the server showed every device succeeded, the server's CPU per device,
and the ratio of the notice rate to the bare relay's.

    python bench/fanout.py                     # 1,000 and 10,000 devices
    python bench/fanout.py --fleets 200        # a quick check
    python bench/fanout.py --postgresql postgresql+asyncpg://postgres@127.0.0.1:5432   # Skylift on PostgreSQL
    python bench/fanout.py --postgresql postgresql+asyncpg://... --replicas 2          # two replicas, one database
    python bench/fanout.py --broker mosquitto          # devices on Mosquitto with Skylift's plugin
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleetkit import (
    Device,
    Fleet,
    add_database_option,
    anonymous_devices,
    api_client,
    bare_broker,
    cpu_seconds,
    database_arguments,
    database_cpu_seconds,
    database_settings,
    fleet_parser,
    metrics_of,
    parse_fleets,
    print_table,
    raise_open_files,
    ratio,
    register_fleet,
    run,
    running_replicas,
    server_pids,
    token_devices,
    upload_small_package,
    wait_until,
)
from upload_download import BenchError, check

# About the size of a token notice (a signed URL, MD5, SHA-256 and the rest).
NOTICE_LIKE = json.dumps({"id": "1234567890", "code": 200, "params": {"url": "x" * 300, "sign": "0" * 32}}).encode()
APPLIED = "skylift_device_messages_applied_total"


@dataclass
class Relay:
    seconds: float  # first publish to last message received

    def rate(self, devices: int) -> float:
        return devices / self.seconds


def bare_relay(devices: int, timeout: float, kind: str = "embedded") -> Relay:
    # The sender stands for the server: its messages are not held back by a client's in-flight window.
    sender = Device(key="sender", token=None, inflight=65535)
    with (
        bare_broker(kind) as broker,
        Fleet(anonymous_devices(devices), broker.port, name="bare") as fleet,
        Fleet([sender], broker.port, threads=1, name="sender") as sending,
    ):
        fleet.ready(timeout)
        sending.ready(timeout)
        started = time.perf_counter()

        def publish() -> None:
            assert sender.client is not None
            for device in fleet.devices:
                sender.client.publish(device.upgrade_topic, NOTICE_LIKE, qos=1)

        sending.swarms[0].call(publish)
        fleet.wait("the bare relay to deliver every message", timeout, lambda device: device.notices > 0)
        return Relay(max(device.notice_at for device in fleet.devices) - started)


@dataclass
class Rollout:
    post_s: float
    last_notice_s: float
    succeeded_s: float
    cpu_per_device_ms: float
    connect_s: float
    database_cpu_per_device_ms: float  # PostgreSQL's processes, when Skylift runs on it


def skylift_rollout(
    root: Path, devices: int, timeout: float, postgresql: str | None, replicas: int = 1, broker: str = "embedded"
) -> Rollout:
    with (
        database_settings(postgresql) as database,
        running_replicas(root, replicas, database, broker) as servers,
        api_client(servers[0]) as api,
    ):
        product_id, tokens = register_fleet(api, devices, "fanout bench")
        package_id = upload_small_package(api, product_id)
        ports = [server.mqtt_port for server in servers]  # devices spread evenly, as by a load balancer
        with Fleet(token_devices(tokens, inform=True, on_notice="100"), ports) as fleet:
            connect_s = fleet.ready(timeout)
            wait_until(
                "every version report applied",
                timeout,
                lambda: sum(metrics_of(server, APPLIED) for server in servers) >= devices,
                0.2,
            )
            pids = server_pids(servers)

            def skylift_cpu() -> float:
                return sum(cpu_seconds(pid) for pid in pids)

            cpu_before, database_cpu_before = skylift_cpu(), database_cpu_seconds()
            print(f"  skylift (pids {pids}): {devices} devices connected; starting the campaign", flush=True)
            started = time.perf_counter()
            body = {"name": "fanout bench", "package_id": package_id}
            campaign = check(api.post("/campaigns", json=body), 201, "POST /campaigns").json()
            post_s = time.perf_counter() - started
            fleet.wait("every notice", timeout, lambda device: device.notices > 0)
            last_notice = max(device.notice_at for device in fleet.devices) - started

            def all_succeeded() -> bool:
                counts = check(api.get(f"/campaigns/{campaign['id']}"), 200, "GET campaign").json()["counts"]
                return int(counts.get("succeeded", 0)) >= devices

            wait_until("every device succeeded", timeout, all_succeeded, 0.2)
            succeeded_s = time.perf_counter() - started
            cpu = skylift_cpu() - cpu_before
            database_cpu = database_cpu_seconds() - database_cpu_before
            duplicates = sum(1 for device in fleet.devices if device.notices > 1)
            if duplicates:
                raise BenchError(f"{duplicates} devices got more than one notice")
            return Rollout(
                post_s, last_notice, succeeded_s, cpu / devices * 1000, connect_s, database_cpu / devices * 1000
            )


def main() -> int:
    parser = fleet_parser(__doc__, "1000,10000", "fleet sizes (comma-separated)")
    add_database_option(parser)
    args = database_arguments(parser)
    raise_open_files()
    rows = []
    for devices in parse_fleets(args.fleets):
        relay = None if args.skip_reference else bare_relay(devices, args.timeout, args.broker)
        root = Path(tempfile.mkdtemp(prefix="skylift-fanout-"))
        try:
            rollout = skylift_rollout(root, devices, args.timeout, args.postgresql, args.replicas, args.broker)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        notice_rate = devices / rollout.last_notice_s
        first = len(rows)
        if args.replicas > 1:
            rows.append((f"{devices} devices: replicas", f"{args.replicas} (one database, devices spread evenly)"))
        if args.broker == "mosquitto":
            rows.append((f"{devices} devices: broker", "Mosquitto with Skylift's plugin (CPU: Skylift + Mosquitto)"))
        rows += [
            (f"{devices} devices: POST /campaigns returned", f"{rollout.post_s:7.2f} s"),
            (
                f"{devices} devices: last notice received",
                f"{rollout.last_notice_s:7.2f} s ({notice_rate:7.0f} notices/s, {notice_rate * 60:9.0f}/min)",
            ),
            (f"{devices} devices: all succeeded", f"{rollout.succeeded_s:7.2f} s"),
            (
                f"{devices} devices: server CPU per device",
                f"{rollout.cpu_per_device_ms:7.2f} ms"
                + (f" + PostgreSQL {rollout.database_cpu_per_device_ms:.2f} ms" if args.postgresql else ""),
            ),
            (f"{devices} devices: fleet connected in", f"{rollout.connect_s:7.2f} s"),
        ]
        if relay is not None:
            rows += [
                (
                    f"{devices} devices: bare {'Mosquitto' if args.broker == 'mosquitto' else 'amqtt'} relay",
                    f"{relay.seconds:7.2f} s ({relay.rate(devices):7.0f} msg/s); "
                    f"ratio notices/s to relay {ratio(notice_rate, relay.rate(devices))}",
                )
            ]
        print_table(f"fan-out, {devices} devices", rows[first:])
    print_table("fan-out (all fleets)", rows)
    return 0


if __name__ == "__main__":
    run(main)

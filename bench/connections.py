"""Idle connected devices: how fast a fleet connects, what each connection costs the server in CPU and memory.

Connects the fleet in stages of `--stage` devices (token login, subscribed to the upgrade topic), first to
a bare amqtt broker (the broker Skylift embeds, alone, as the reference), then to the real `skylift
serve`. For each stage it records the time to connect it and the server's CPU time per connect (which
must stay flat as the fleet grows), and at each size in `--fleets` the server's RSS growth per 1,000
devices. Every wait has a time limit; the script exits 1 with the reason when one runs out.

    python bench/connections.py                          # 1,000 and 10,000 devices
    python bench/connections.py --fleets 500 --stage 250 # a quick check
    python bench/connections.py --broker mosquitto       # devices on Mosquitto with Skylift's plugin
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleetkit import (
    Device,
    Fleet,
    anonymous_devices,
    api_client,
    bare_broker,
    cpu_seconds,
    parse_fleets,
    print_table,
    raise_open_files,
    ratio,
    register_fleet,
    rss_kib,
    run,
    running_skylift,
    server_pids,
    token_devices,
)

SETTLE_S = 1.0  # after a stage, before RSS is read: the connections' last packets are handled


@dataclass
class Stage:
    devices: int  # connected after this stage
    seconds: float
    cpu_per_connect_ms: float
    rss_kib: int


def connect_in_stages(
    devices: list[Device], port: int, pids: list[int], stage: int, timeout: float
) -> tuple[int, list[Stage]]:
    """Connect `devices` `stage` at a time; the RSS before the first, and each stage's figures (CPU and RSS
    of the server's processes together: Skylift, and an external broker when there is one)."""
    fleets: list[Fleet] = []
    stages = []
    base_rss = sum(rss_kib(pid) for pid in pids)
    try:
        for start in range(0, len(devices), stage):
            batch = devices[start : start + stage]
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            fleet = Fleet(batch, port, threads=1, name=f"stage-{start}")
            fleets.append(fleet.__enter__())
            seconds = fleet.ready(timeout)
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            time.sleep(SETTLE_S)
            rss = [rss_kib(pid) for pid in pids]
            stages.append(Stage(start + len(batch), seconds, cpu / len(batch) * 1000, sum(rss)))
            print(
                f"  {start + len(batch):6d} connected: stage {seconds:6.2f} s, "
                f"{cpu / len(batch) * 1000:5.2f} ms CPU per connect, RSS "
                + " + ".join(f"{kib / 1024:7.1f}" for kib in rss)
                + " MiB",
                flush=True,
            )
        return base_rss, stages
    finally:
        for fleet in reversed(fleets):
            fleet.__exit__(None, None, None)


def at(stages: list[Stage], size: int) -> Stage:
    return next(stage for stage in stages if stage.devices >= size)


def summary(name: str, base_rss: int, stages: list[Stage], fleets: list[int]) -> dict[int, tuple[float, float]]:
    """Per fleet size: (seconds to connect it, KiB of server memory per device)."""
    figures = {}
    for size in fleets:
        reached = at(stages, size)
        seconds = sum(stage.seconds for stage in stages if stage.devices <= reached.devices)
        per_device = (reached.rss_kib - base_rss) / reached.devices
        figures[size] = (seconds, per_device)
    first, last = stages[0], stages[-1]
    print(
        f"  {name}: CPU per connect {first.cpu_per_connect_ms:.2f} ms in the first stage, "
        f"{last.cpu_per_connect_ms:.2f} ms in the last ({last.cpu_per_connect_ms / first.cpu_per_connect_ms:.2f}x)"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleets", default="1000,10000", help="fleet sizes to report (comma-separated)")
    parser.add_argument("--stage", type=int, default=1000, help="devices connected per stage")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one stage may take")
    parser.add_argument("--skip-reference", action="store_true", help="do not measure the bare amqtt broker")
    parser.add_argument(
        "--broker",
        choices=["embedded", "mosquitto"],
        default="embedded",
        help="where devices connect: the embedded broker, or Debian's Mosquitto with Skylift's plugin",
    )
    args = parser.parse_args()
    fleets = parse_fleets(args.fleets)
    total = max(fleets)
    raise_open_files()
    root = Path(tempfile.mkdtemp(prefix="skylift-connections-"))
    try:
        reference: dict[int, tuple[float, float]] = {}
        bare = "bare Mosquitto" if args.broker == "mosquitto" else "bare amqtt"
        if not args.skip_reference:
            print(f"{bare} broker, {total} devices in stages of {args.stage}:")
            with bare_broker(args.broker) as broker:
                base, stages = connect_in_stages(
                    anonymous_devices(total), broker.port, [broker.pid], args.stage, args.timeout
                )
                reference = summary(bare, base, stages, fleets)
        on = " on Mosquitto (CPU and RSS: Skylift + Mosquitto)" if args.broker == "mosquitto" else ""
        print(f"skylift{on}, {total} devices in stages of {args.stage}:")
        with running_skylift(root, broker=args.broker) as server, api_client(server) as api:
            _, tokens = register_fleet(api, total, "connections bench")
            pids = server_pids([server])
            base, stages = connect_in_stages(token_devices(tokens), server.mqtt_port, pids, args.stage, args.timeout)
            figures = summary("skylift" + on, base, stages, fleets)
        rows = []
        for size in fleets:
            seconds, per_device = figures[size]
            line = f"connect {seconds:7.2f} s ({size / seconds:6.0f}/s), {per_device:6.1f} KiB per device"
            if size in reference:
                ref_seconds, ref_per_device = reference[size]
                line += (
                    f"  | {bare} {ref_seconds:7.2f} s, {ref_per_device:6.1f} KiB"
                    f"  | time ratio {ratio(seconds, ref_seconds)}, memory ratio {ratio(per_device, ref_per_device)}"
                )
            rows.append((f"{size} devices", line))
        rows.append(("RSS per 1,000 devices", f"{figures[total][1] * 1000 / 1024:.1f} MiB (at {total})"))
        print_table(f"connections (skylift vs the {bare} broker, same run)", rows)
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run(main)

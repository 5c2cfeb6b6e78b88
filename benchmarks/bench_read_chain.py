#!/usr/bin/env python3
"""Per-read cost of the serial radar chain for small batches (issue 18).

A pty read at 10,000 reports/s brings about 14 track reports; the event loop
runs read -> decode -> normalise -> bus for it in one callback, and a report
of the next read waits behind it. At such sizes the cost is mostly fixed per
call (numpy's per-call overhead, object creation), so this times the real
functions on the real frames for batches of 1, 14 and 64 reports:

* ``decode``: ``SerialRadarCodec.receive_data`` + ``drain`` (gateway role) of
  the frames the device role (the emulator's encoder) writes;
* ``normalise``: :func:`gateway.normalise.normalise_polar` (of which
  ``polar_to_ecef``: :func:`hilgw.geo.polar_to_ecef`);
* ``read callback``: ``SerialRadarDriver.feed``, the whole callback: decode,
  sequence gaps, stale check, normalise, publish on a gateway's ``reports``
  topic with its fusion backlog and MQTT queue subscribed (built by
  ``Gateway(config)``, nothing started);
* ``to proto``: the MQTT feed's work for that batch: ``reports_to_proto``
  and ``SerializeToString``.

Each figure is the best of several repeats, in CPU µs per call of this
thread, so other load on the machine inflates it less than a mean of wall
times would.

    .venv/bin/python benchmarks/bench_read_chain.py [--sizes 1,14,64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_latency import polar_reports
from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE
from drivers.serial_radar import SerialRadarCodec
from gateway.config import parse_config
from gateway.devices.base import DriverContext, DriverServices, build_driver
from gateway.devices.serial_radar import SerialRadarDriver
from gateway.health import DeviceStats
from gateway.normalise import POLAR_FIELDS, POLAR_SIGMA_FIELDS, normalise_polar, reports_to_proto
from gateway.supervisor import Gateway
from hilgw.geo import polar_to_ecef

SENSOR = 7
STAGES = ("decode", "polar_to_ecef", "normalise", "read callback", "to proto")


def _best_us(fn: Callable[[], object], budget_s: float, repeats: int) -> float:
    """Best-of-``repeats`` CPU µs per call of ``fn``, each repeat about ``budget_s`` long.

    Timed on this thread's CPU clock, not the wall clock: on a shared machine
    the wall clock also counts the time other processes held the core.
    """
    fn()
    t0 = time.thread_time()
    for _ in range(10):
        fn()
    one = max((time.thread_time() - t0) / 10, 1e-7)
    number = max(1, int(budget_s / one))
    return min(timeit.repeat(fn, number=number, repeat=repeats, timer=time.thread_time)) / number * 1e6


def measure(sizes: list[int], budget_s: float = 0.1, repeats: int = 7) -> list[dict[str, float]]:
    """µs per call of each stage, one row per batch size."""
    cfg = parse_config(
        {
            "gateway_id": "bench",
            "fusion": {"worker": "process"},  # the worker is not started: the stage only stacks
            "devices": [
                {
                    "id": "radar",
                    "protocol": "serial_radar",
                    "wire_sensor_id": SENSOR,
                    "transport": {"kind": "serial", "url": "/dev/null", "baudrate": 921600},
                    "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
                    "max_report_age_s": 60.0,
                }
            ],
        }
    )
    gw = Gateway(cfg)
    mqtt = gw.reports.subscribe("mqtt", maxsize=4096)  # as Gateway._feed_mqtt does
    dev = cfg.devices[0]
    ctx = DriverContext(
        "bench", gw.reports, gw.raw, DeviceStats(dev.id, dev.protocol, "serial"), wall_ns=time.time_ns
    )
    driver = build_driver(dev, ctx, DriverServices(add_sensor=gw.fusion.engine.add_sensor))
    assert isinstance(driver, SerialRadarDriver)
    geo = driver.geometry
    sensor_ids = gw.fusion.sensor_ids

    rng = np.random.default_rng(3)
    targets = 1000
    table = (
        rng.uniform(20e3, 150e3, targets),
        rng.uniform(-1.2, 1.2, targets),
        rng.uniform(0.01, 0.2, targets),
    )
    device = SerialRadarCodec(Role.DEVICE, sensor_id=SENSOR)
    rows = []
    for n in sizes:
        data = device.encode_track_batch(polar_reports(np.arange(n) % targets, table, rng, TRACK_BATCH_DTYPE))
        codec = SerialRadarCodec(Role.GATEWAY, sensor_id=SENSOR)

        def decode(codec: SerialRadarCodec = codec, data: bytes = data) -> object:
            codec.receive_data(data)
            return codec.drain()

        (batch,) = decode()  # type: ignore[misc]
        arr = batch.reports
        t_rx = int(arr["sensor_time_ns"][0])
        polar6 = np.column_stack([arr[f] for f in POLAR_FIELDS])
        sigma6 = np.column_stack([arr[f] for f in POLAR_SIGMA_FIELDS])
        reports = normalise_polar(geo, 0, arr)

        def feed(data: bytes = data, t_rx: int = t_rx) -> None:
            driver.feed(data, t_rx)
            mqtt.get_all()  # the MQTT feed takes what the read queued
            if gw.fusion.backlog_reports > 5000:  # a fusion step takes the backlog
                gw.fusion._take_backlog()

        def to_proto(reports: object = reports, arr: np.ndarray = arr, t_rx: int = t_rx) -> bytes:
            msg = reports_to_proto(reports, sensor_ids, t_rx, "bench", batch_sequence=1, source=arr)  # type: ignore[arg-type]
            return msg.SerializeToString()

        funcs: dict[str, Callable[[], object]] = {
            "decode": decode,
            "polar_to_ecef": partial(
                polar_to_ecef, geo.origin, geo.to_local, polar6, sigma6, arr["rates_valid"]
            ),
            "normalise": partial(normalise_polar, geo, 0, arr),
            "read callback": feed,
            "to proto": to_proto,
        }
        row: dict[str, float] = {"reports": n}
        for name in STAGES:
            row[name] = _best_us(funcs[name], budget_s, repeats)
        row["chain"] = row["read callback"] + row["to proto"]
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,14,64", help="reports per read, comma-separated")
    ap.add_argument("--budget", type=float, default=0.1, help="seconds per timed repeat")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    rows = measure([int(s) for s in ns.sizes.split(",")], ns.budget, ns.repeats)
    if ns.json:
        print(json.dumps({"load_1min": os.getloadavg()[0], "unit": "us_per_call", "rows": rows}))
        return 0
    cols = ("reports", *STAGES, "chain")
    print(f"CPU µs per call, best of {ns.repeats} (load {os.getloadavg()[0]:.1f})")
    print(" ".join(f"{c:>14}" for c in cols))
    for row in rows:
        print(" ".join(f"{row[c]:>14.1f}" if c != "reports" else f"{int(row[c]):>14d}" for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Serial radar pipeline throughput, printed as a table.

1. codec + normalisation: frames/s through SerialRadarCodec.drain() and
   normalise_polar() on 4 KiB chunks (the gateway's hot path, no I/O).
2. end to end: a writer process pumps pre-encoded TRACK_REPORT frames into a
   pty as fast as the kernel takes them; the gateway reads the pty, decodes,
   normalises, fuses and publishes to a real mosquitto on 127.0.0.1 (the
   row is skipped when mosquitto is not installed); a subscriber
   counts the SensorReport rows that arrive. Reports/s = rows received / time
   from the first to the last.

    .venv/bin/python benchmarks/bench_pipeline.py [--frames 200000] [--e2e-frames 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

import aiomqtt
import numpy as np
from rich.console import Console
from rich.table import Table

from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE, TrackReportBatch
from drivers.serial_radar import SerialRadarCodec
from gateway.config import parse_config
from gateway.normalise import normalise_polar
from gateway.supervisor import Gateway
from hilgw.geo import site_geometry
from hilgw.v1 import report_pb2

SENSOR = 7


def make_reports(n: int, t_ns: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    a = np.zeros(n, TRACK_BATCH_DTYPE)
    a["sensor_track_id"] = rng.integers(1, 500, n)
    a["sensor_time_ns"] = t_ns
    a["range_m"] = rng.uniform(10e3, 300e3, n)
    a["azimuth_rad"] = rng.uniform(0, 2 * np.pi, n)
    a["elevation_rad"] = rng.uniform(0, 1.0, n)
    a["range_rate_mps"] = rng.uniform(-2000, 2000, n)
    a["sigma_range_m"] = 15.0
    a["sigma_azimuth_rad"] = 2e-3
    a["sigma_elevation_rad"] = 2e-3
    a["sigma_range_rate_mps"] = 1.0
    a["quality"] = 0.9
    return a


def bench_codec(n: int) -> tuple[float, float]:
    dev = SerialRadarCodec(Role.DEVICE, sensor_id=SENSOR)
    wire = dev.encode_track_batch(make_reports(n, time.time_ns()))
    geom = site_geometry("r", 54.0, 10.0, 20.0)
    chunks = [wire[i : i + 4096] for i in range(0, len(wire), 4096)]
    best_codec = best_total = 0.0
    for _ in range(3):
        gw = SerialRadarCodec(Role.GATEWAY, sensor_id=SENSOR)
        t0 = time.perf_counter()
        batches = []
        for c in chunks:
            gw.receive_data(c)
            batches.extend(e for e in gw.drain() if isinstance(e, TrackReportBatch))
        t1 = time.perf_counter()
        rows = sum(normalise_polar(geom, 0, b.reports).t_ns.shape[0] for b in batches)
        t2 = time.perf_counter()
        assert rows == n, rows
        best_codec = max(best_codec, n / (t1 - t0))
        best_total = max(best_total, n / (t2 - t0))
    return best_codec, best_total


async def bench_e2e(n: int, port: int) -> dict[str, float]:
    master, slave = os.openpty()
    tty.setraw(slave)
    slave_path = os.ttyname(slave)
    cfg = parse_config(
        {
            "gateway_id": "bench",
            "mqtt": {"port": port, "queue_size": 1_000_000},
            "fusion": {"publish_hz": 5.0},
            "devices": [
                {
                    "id": "radar",
                    "protocol": "serial_radar",
                    "wire_sensor_id": SENSOR,
                    "transport": {"kind": "serial", "url": slave_path, "baudrate": 921600},
                    "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
                    "max_report_age_s": 3600.0,
                }
            ],
        }
    )
    dev = SerialRadarCodec(Role.DEVICE, sensor_id=SENSOR)
    wire = dev.encode_track_batch(make_reports(n, time.time_ns()))
    received = 0
    first = last = 0.0
    async with aiomqtt.Client("127.0.0.1", port) as sub, Gateway(cfg) as gw:
        await sub.subscribe("hilgw/bench/reports/radar")
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        os.set_blocking(master, True)
        t_start = time.perf_counter()
        writer = loop.run_in_executor(None, _pump, master, wire)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(120):
                async for msg in sub.messages:
                    rows = len(report_pb2.SensorReportBatch.FromString(msg.payload).reports)  # type: ignore[arg-type]
                    now = time.perf_counter()
                    if not received:
                        first = now
                    received += rows
                    last = now
                    if received >= n:
                        break
        await writer
        stats = gw.stats["radar"]
        drops = dict(stats.drops)
        mq_drops = sum(gw.mqtt.dropped.values()) if gw.mqtt else 0
        frames_in = stats.frames_in
    os.close(master)
    os.close(slave)
    span = max(last - t_start, 1e-9)
    return {
        "sent": n,
        "frames_in": frames_in,
        "received": received,
        "reports_per_s": received / span,
        "first_latency_s": first - t_start,
        "gateway_drops": sum(drops.values()),
        "mqtt_drops": mq_drops,
    }


def _pump(fd: int, wire: bytes) -> None:
    view = memoryview(wire)
    while view:
        n = os.write(fd, view[:65536])
        view = view[n:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--e2e-frames", type=int, default=100_000)
    ns = ap.parse_args()
    console = Console()
    codec_fps, total_fps = bench_codec(ns.frames)
    t = Table(title="serial radar pipeline")
    t.add_column("stage")
    t.add_column("rate", justify="right")
    t.add_column("notes")
    t.add_row("codec drain()", f"{codec_fps:,.0f} frames/s", f"{ns.frames:,} frames, 4 KiB chunks, best of 3")
    t.add_row("codec + normalise_polar", f"{total_fps:,.0f} frames/s", "polar -> ECEF with 6x6 covariance")

    mosq = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if mosq:
        from tests.conftest import free_port, wait_port

        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "m.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n")
            proc = subprocess.Popen([mosq, "-c", str(conf)], stderr=subprocess.DEVNULL)
            try:
                wait_port(port)
                r = asyncio.run(bench_e2e(ns.e2e_frames, port))
            finally:
                proc.terminate()
                proc.wait()
        broker = "mosquitto"
    else:
        broker = "none (install mosquitto)"
        r = None
    if r is not None:
        t.add_row(
            f"end to end (pty -> gateway -> {broker} -> subscriber)",
            f"{r['reports_per_s']:,.0f} reports/s",
            f"{r['received']:,}/{r['sent']:,} received, gateway drops {r['gateway_drops']}, "
            f"mqtt drops {r['mqtt_drops']}, first after {r['first_latency_s']:.2f} s",
        )
    console.print(t)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

"""Serial radar codec throughput: decode (drain vs next_event) and batch encode.

Feeds N TRACK_REPORT frames (with a STATUS every 100 frames) to a gateway codec
in fixed-size chunks, as a serial driver would, and prints frames/s. Run:

    .venv/bin/python benchmarks/bench_serial_codec.py [--frames 100000] [--chunk 4096]

Figures are wall-clock on whatever else the machine is doing: take the best of
``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.base import NEED_DATA, Role
from drivers.radar import TRACK_BATCH_DTYPE, SensorState, Status, TrackReportBatch
from drivers.serial_radar import SerialRadarCodec


def make_reports(n: int, rng: np.random.Generator) -> np.ndarray:
    arr = np.zeros(n, dtype=TRACK_BATCH_DTYPE)
    arr["sensor_track_id"] = rng.integers(0, 500, n)
    arr["sensor_time_ns"] = 1_700_000_000_000_000_000 + np.arange(n) * 1_000_000
    arr["range_m"] = rng.uniform(1e3, 4e5, n)
    arr["azimuth_rad"] = rng.uniform(0, 2 * np.pi, n)
    arr["elevation_rad"] = rng.uniform(0, 1.2, n)
    arr["range_rate_mps"] = rng.uniform(-3000, 3000, n)
    arr["azimuth_rate_radps"] = rng.uniform(-0.1, 0.1, n)
    arr["elevation_rate_radps"] = rng.uniform(-0.1, 0.1, n)
    arr["sigma_range_m"] = rng.uniform(1, 50, n)
    arr["sigma_azimuth_rad"] = rng.uniform(1e-4, 5e-3, n)
    arr["sigma_elevation_rad"] = rng.uniform(1e-4, 5e-3, n)
    arr["sigma_range_rate_mps"] = rng.uniform(0.1, 5, n)
    arr["sigma_azimuth_rate_radps"] = rng.uniform(1e-5, 1e-3, n)
    arr["sigma_elevation_rate_radps"] = rng.uniform(1e-5, 1e-3, n)
    arr["quality"] = rng.uniform(0, 1, n)
    arr["rates_valid"] = True
    return arr


def make_stream(n: int) -> tuple[bytes, float]:
    dev = SerialRadarCodec(Role.DEVICE, sensor_id=7)
    reports = make_reports(n, np.random.default_rng(1))
    status = Status(
        sensor_time_ns=1_700_000_000_000_000_000,
        state=SensorState.OK,
        time_sync_locked=True,
        radiating=True,
        track_count=500,
        uptime_s=10,
    )
    parts = []
    t0 = time.perf_counter()
    for start in range(0, n, 100):
        parts.append(dev.encode_track_batch(reports[start : start + 100]))
        parts.append(dev.send(status))
    encode_s = time.perf_counter() - t0
    return b"".join(parts), encode_s


def run_drain(stream: bytes, chunk: int) -> int:
    gw = SerialRadarCodec(Role.GATEWAY, sensor_id=7)
    rows = 0
    for i in range(0, len(stream), chunk):
        gw.receive_data(stream[i : i + chunk])
        for ev in gw.drain():
            if isinstance(ev, TrackReportBatch):
                rows += len(ev)
    return rows


def run_next_event(stream: bytes, chunk: int) -> int:
    gw = SerialRadarCodec(Role.GATEWAY, sensor_id=7)
    count = 0
    for i in range(0, len(stream), chunk):
        gw.receive_data(stream[i : i + chunk])
        while gw.next_event() is not NEED_DATA:
            count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000, help="track-report frames")
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per receive_data call")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the best is shown")
    args = ap.parse_args()

    stream, encode_s = make_stream(args.frames)
    frames_total = args.frames + (args.frames + 99) // 100
    results: list[tuple[str, float]] = [("encode_track_batch + send (device)", encode_s)]
    for name, fn in (("drain() (gateway, batched)", run_drain), ("next_event() (gateway)", run_next_event)):
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn(stream, args.chunk)
            best = min(best, time.perf_counter() - t0)
        results.append((name, best))

    print(f"{args.frames} TRACK_REPORT + {frames_total - args.frames} STATUS frames, {len(stream)} bytes, ")
    print(f"{args.chunk}-byte chunks, best of {args.repeat} (shared machine: figures are noisy)\n")
    print(f"{'path':<38} {'seconds':>9} {'frames/s':>12} {'MB/s':>8}")
    for name, secs in results:
        print(f"{name:<38} {secs:>9.3f} {frames_total / secs:>12,.0f} {len(stream) / secs / 1e6:>8.1f}")


if __name__ == "__main__":
    main()

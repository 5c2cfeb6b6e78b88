"""CAN radar throughput: frames/s decoded, reassembled and normalised, against
cantools' per-message decode and python-can's own receive ceiling, in one run.

    .venv/bin/python benchmarks/bench_can.py [--reports 20000]

Rows (frames/s, higher is better; ratios against the same run's baselines):

* ``cantools decode_message`` : ``Database.decode_message`` per frame, no
  reassembly, no normalisation (the per-message reference decoder);
* ``python-can recv (virtual)``: ``bus.recv(timeout=0)`` draining frames
  already queued on a virtual bus: the ceiling of receiving through python-can;
* ``hilgw codec``              : ``CanRadarCodec.receive_frames`` (classic: join
  five parts per report; vectorised decode) + ``normalise_polar`` to ECEF;
* ``hilgw transport+codec``    : frames sent on a virtual bus and taken through
  ``CanTransport`` (reader thread, batches) + codec + normalisation.

The machine is shared: figures are noisy; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import can
import numpy as np

from drivers.base import Role
from drivers.can_radar import CanRadarCodec
from drivers.can_radar.icd import CLASSIC_DB, FD_DB
from drivers.radar import TRACK_BATCH_DTYPE, TrackReportBatch
from gateway.config import CanTransportConfig
from gateway.normalise import normalise_polar
from gateway.transports.can import CanTransport
from hilgw.can import CanFrame
from hilgw.geo import site_geometry
from sim_devices.can_radar_emulator import SyntheticTracks


def make_frames(n_reports: int, fd: bool) -> list[CanFrame]:
    src = SyntheticTracks(min(n_reports, 4096), time.time_ns())
    rounds = max(1, n_reports // src.n)
    dev = CanRadarCodec(Role.DEVICE, fd=fd)
    now = time.time_ns()
    frames: list[CanFrame] = []
    for r in range(rounds):
        frames += dev.encode_reports(src.scan(r * 0.1))
    return [f._replace(timestamp_ns=now) for f in frames]


def bench_codec(frames: list[CanFrame], chunk: int = 2000) -> tuple[float, int]:
    geo = site_geometry("bench", 52.0, 4.0, 10.0)
    codec = CanRadarCodec(Role.GATEWAY, fd=frames[0].is_fd)  # a radar takes only its own format
    n_reports = 0
    t0 = time.perf_counter()
    for i in range(0, len(frames), chunk):
        for ev in codec.receive_frames(frames[i : i + chunk]):
            if isinstance(ev, TrackReportBatch):
                normalise_polar(geo, 0, ev.reports)
                n_reports += len(ev)
    return len(frames) / (time.perf_counter() - t0), n_reports


def bench_cantools(frames: list[CanFrame], fd: bool) -> float:
    db = FD_DB if fd else CLASSIC_DB
    decode = db.decode_message
    t0 = time.perf_counter()
    for f in frames:
        decode(f.arbitration_id, f.data)
    return len(frames) / (time.perf_counter() - t0)


def bench_python_can_recv(frames: list[CanFrame], fd: bool) -> float:
    tx = can.Bus(interface="virtual", channel="bench-recv")
    rx = can.Bus(interface="virtual", channel="bench-recv")
    for f in frames:
        tx.send(
            can.Message(arbitration_id=f.arbitration_id, data=f.data, is_fd=f.is_fd, is_extended_id=False)
        )
    n = 0
    t0 = time.perf_counter()
    while rx.recv(timeout=0) is not None:
        n += 1
    rate = n / (time.perf_counter() - t0)
    tx.shutdown()
    rx.shutdown()
    return rate


async def bench_pipeline(frames: list[CanFrame]) -> float:
    cfg = CanTransportConfig(
        kind="can", interface="virtual", channel="bench-pipe", fd=frames[0].is_fd, queue_size=len(frames) + 1
    )
    geo = site_geometry("bench", 52.0, 4.0, 10.0)
    codec = CanRadarCodec(Role.GATEWAY, fd=frames[0].is_fd)
    async with CanTransport(cfg) as rx:
        tx = can.Bus(interface="virtual", channel="bench-pipe")
        msgs = [can.Message(arbitration_id=f.arbitration_id, data=f.data, is_fd=f.is_fd, is_extended_id=False)
                for f in frames]  # fmt: skip
        t0 = time.perf_counter()
        await asyncio.to_thread(lambda: [tx.send(m) for m in msgs])
        got = 0
        while got < len(frames):
            batch = await rx.recv_batch()
            got += len(batch)
            for ev in codec.receive_frames(batch):
                if isinstance(ev, TrackReportBatch):
                    normalise_polar(geo, 0, ev.reports)
        rate = got / (time.perf_counter() - t0)
        tx.shutdown()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reports", type=int, default=20000)
    ns = p.parse_args()
    assert TRACK_BATCH_DTYPE is not None
    print(f"{'variant':8} {'path':28} {'frames/s':>12} {'x cantools':>11} {'x python-can':>13}")
    for fd in (False, True):
        frames = make_frames(ns.reports, fd)
        ct = bench_cantools(frames, fd)
        pc = bench_python_can_recv(frames, fd)
        ours, n_rep = bench_codec(frames)
        pipe = asyncio.run(bench_pipeline(frames))
        name = "CAN FD" if fd else "classic"
        rows = [
            ("cantools decode_message", ct),
            ("python-can recv (virtual)", pc),
            ("hilgw codec+normalise", ours),
            ("hilgw transport+codec+norm", pipe),
        ]
        for label, rate in rows:
            print(f"{name:8} {label:28} {rate:12,.0f} {rate / ct:11.2f} {rate / pc:13.2f}")
        print(f"{name:8} ({len(frames):,} frames, {n_rep:,} reports)")
    _ = np


if __name__ == "__main__":
    main()

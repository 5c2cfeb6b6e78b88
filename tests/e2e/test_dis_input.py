"""DIS input: Entity State PDUs sent to the frigate emulator become the targets its radar reports."""

from __future__ import annotations

import contextlib
import socket
import time

import numpy as np
import pymap3d
import pytest

from drivers.asterix import AsterixCodec, TargetReportBatch
from drivers.base import Role
from drivers.dis import DisCodec, EntityState, timestamp_raw
from sim_devices.dis_input import DisTruth
from sim_devices.frigate_emulator import start_frigate_emulator
from tests.e2e.test_frigate_e2e import SCENARIO

pytestmark = pytest.mark.e2e


def test_dis_truth_dead_reckons_times_out_and_counts_other_pdus() -> None:
    t0 = 1_700_000_000_000_000_000
    truth = DisTruth(t0, capacity=4, timeout_s=5.0)
    truth.update(EntityState((1, 2, 3), location_m=(4e6, 1e6, 4.8e6), velocity_mps=(10.0, 0.0, 0.0)), t0)
    _, x, active = truth.at(2.0)
    assert active.tolist() == [True, False, False, False]
    assert x[0, 0] == pytest.approx(4e6 + 20.0)
    _, _, active = truth.at(6.0)
    assert not active.any()
    truth.expire(t0 + 6 * 10**9)
    assert truth.slot_of((1, 2, 3)) is None
    assert truth.counters["entities_timed_out"] == 1


async def test_dis_entities_drive_the_emulated_radar() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.2)
        emu = start_frigate_emulator(
            ["--scenario", str(SCENARIO), "--asterix", f"127.0.0.1:{rx.getsockname()[1]}", "--dis-port", "0"]
        )
        dis_port = int(emu.ready["dis_port"])
        # An aircraft 40 km north-east of the ship's start, 6 km up, flying east.
        pos = pymap3d.geodetic2ecef(45.25, -29.65, 6000.0)
        vel = pymap3d.enu2uvw(150.0, 0.0, 0.0, 45.25, -29.65)
        codec = DisCodec(Role.DEVICE)
        got = []
        try:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                now = time.time_ns()
                es = EntityState((7, 8, 9), location_m=pos, velocity_mps=vel, marking="LAB1",
                                 timestamp_raw=timestamp_raw(now))  # fmt: skip
                tx.sendto(codec.send(es), ("127.0.0.1", dis_port))
                tx.sendto(
                    b"\x07\x01\x02\x01" + bytes(4) + b"\x00\x0c" + bytes(2), ("127.0.0.1", dis_port)
                )  # a Fire PDU header
                with contextlib.suppress(TimeoutError):
                    got.append(rx.recv(65536))
        finally:
            emu.stop()
    assert emu.final is not None
    assert emu.final["dis"]["entity_state"] > 0
    assert emu.final["dis"]["unsupported_pdu"] > 0  # counted, not an error
    dec = AsterixCodec(Role.GATEWAY)
    plots = [
        e.rows
        for g in got
        for e in dec.receive_datagram_batch(g, time.time_ns())
        if isinstance(e, TargetReportBatch)
    ]
    assert plots, ("no CAT048 from DIS truth", len(got), emu.final, emu.stderr_text()[-500:])
    rows = np.concatenate(plots)
    real = rows[np.abs(rows["height_m"] - 6000.0) < 1000.0]
    assert len(real) >= 2
    assert np.all(np.abs(real["range_m"] - 40_000.0) < 15_000.0)

"""ASTERIX records/s decoded AND normalised to ECEF reports, one core (gateway.devices.asterix).

Datagrams of N CAT048 target reports (ship-relative, "deck" frame, own ship from an
NMEA-fed store) and of N CAT062 system tracks, through AsterixDriver.handle_datagram:
decode (same-layout runs as strided numpy slices, else the libasterix-compiled
walker) + own-ship interpolation + vectorised ECEF
conversion with covariance. Target: >= 20k records/s. Timing is noisy on a shared machine.

    .venv/bin/python benchmarks/bench_asterix_pipeline.py
"""

from __future__ import annotations

import math
import time

import numpy as np

from drivers.asterix import AsterixCodec, SystemTrack062, TargetReport048
from drivers.base import Role
from drivers.nmea import OwnShipFix
from gateway.bus import Topic
from gateway.config import parse_config
from gateway.devices.asterix import AsterixDriver
from gateway.devices.base import DriverContext
from gateway.devices.ownship import OwnShipStore
from gateway.health import DeviceStats

T0 = 1_700_000_000_000_000_000
DEG = math.pi / 180


def main() -> None:
    cfg = parse_config(
        {
            "devices": [
                {
                    "id": "f",
                    "protocol": "asterix",
                    "transport": {"kind": "udp", "bind_port": 0},
                    "ownship": {"source": "nav"},
                    "asterix": {"azimuth_reference": "deck"},
                }
            ]
        }
    )
    dev = cfg.devices[0]
    assert dev.ownship is not None
    store = OwnShipStore(dev.ownship)
    for k in range(20):
        t = T0 - 10 * 10**9 + k * 10**9
        store.update(
            OwnShipFix(
                "GGA",
                "GP",
                t,
                t,
                lat_rad=45 * DEG,
                lon_rad=-30 * DEG + k * 1e-6,
                alt_msl_m=0.0,
                geoid_sep_m=0.0,
                fix_quality=1,
                hdop=0.9,
            )
        )
        store.update(OwnShipFix("PASHR", "P", t, t, heading_rad=0.3, roll_rad=0.02, pitch_rad=0.01))
        store.update(OwnShipFix("VTG", "GP", t, t, course_rad=0.3, speed_mps=10.0))
    rng = np.random.default_rng(0)
    enc = AsterixCodec(Role.DEVICE)
    print(f"{'records/datagram':>16} {'category':>8} {'records/s':>12} {'us/datagram':>12}")
    for n in (10, 40, 100):
        plots = [
            TargetReport048(
                25,
                10,
                T0,
                float(rng.uniform(5e3, 2e5)),
                float(rng.uniform(0, 6.28)),
                float(rng.uniform(100, 12000)),
                i + 1,
                200.0,
                1.0,
            )
            for i in range(n)
        ]
        tracks = [
            SystemTrack062(
                25,
                11,
                i + 1,
                T0,
                lat_rad=45.5 * DEG,
                lon_rad=-29.5 * DEG,
                vx_mps=100.0,
                vy_mps=50.0,
                geo_alt_m=5000.0,
                sigma_x_m=50.0,
                sigma_y_m=50.0,
            )
            for i in range(n)
        ]
        for name, dg in (("CAT048", enc.send(plots)), ("CAT062", enc.send(tracks))):
            drv = AsterixDriver(
                dev,
                DriverContext("b", Topic("r"), Topic("raw"), DeviceStats("f", "asterix", "udp")),
                ownship=store,
                add_sensor=lambda g: 0,
            )
            reps = max(50, 20000 // n)
            drv.handle_datagram(dg, T0)
            t0 = time.perf_counter()
            for _ in range(reps):
                out = drv.handle_datagram(dg, T0)
            dt = time.perf_counter() - t0
            assert sum(len(o.reports) for o in out) == n
            print(f"{n:>16} {name:>8} {n * reps / dt:>12,.0f} {dt / reps * 1e6:>12.0f}")


if __name__ == "__main__":
    main()

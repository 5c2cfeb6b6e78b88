"""What the serial radar driver counts per read: sequence gaps and stale reports (issue 18).

Both have a fast path for the usual read (no gap, nothing stale); these hold
the counts to the ICD's rules (docs/icd/serial-radar.md §6.2) over reads
split anywhere, wrap-around, restarts and reports at the age bound.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE
from drivers.serial_radar import SerialRadarCodec
from gateway.bus import FullPolicy, Topic
from gateway.config import parse_config
from gateway.devices.base import DriverContext, ReportsIn
from gateway.devices.serial_radar import SerialRadarDriver
from gateway.health import DeviceStats
from hilgw.geo import site_geometry

SID = 7
T0 = 1_700_000_000_000_000_000
MAX_AGE_S = 2.0


def make_driver() -> tuple[SerialRadarDriver, list[ReportsIn]]:
    cfg = parse_config(
        {
            "devices": [
                {
                    "id": "radar",
                    "protocol": "serial_radar",
                    "wire_sensor_id": SID,
                    "transport": {"kind": "serial", "url": "/dev/null"},
                    "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
                    "max_report_age_s": MAX_AGE_S,
                }
            ]
        }
    )
    dev = cfg.devices[0]
    reports: Topic[ReportsIn] = Topic("reports")
    got: list[ReportsIn] = []
    reports.subscribe("test", maxsize=10**6, policy=FullPolicy.DROP_NEWEST, sink=got.append)
    ctx = DriverContext("gw", reports, Topic("raw"), DeviceStats(dev.id, dev.protocol, "serial"))
    return SerialRadarDriver(dev, ctx, site_geometry("radar", 54.0, 10.0, 20.0)), got


def frames(sequences: list[int], times: list[int] | None = None) -> list[bytes]:
    out = []
    for k, seq in enumerate(sequences):
        row = np.zeros(1, TRACK_BATCH_DTYPE)
        row["sensor_track_id"] = k + 1
        row["sensor_time_ns"] = T0 if times is None else times[k]
        row["range_m"], row["azimuth_rad"], row["elevation_rad"] = 50e3 + k, 0.3, 0.05
        row["sigma_range_m"], row["sigma_azimuth_rad"], row["sigma_elevation_rad"] = 15.0, 2e-3, 2e-3
        row["sigma_range_rate_mps"], row["quality"] = 1.0, 0.9
        out.append(SerialRadarCodec(Role.DEVICE, sensor_id=SID, first_sequence=seq).encode_track_batch(row))
    return out


def lost_by_rule(sequences: list[int]) -> int:
    """ICD §6.2, one step at a time: a step of 2 to 2^16 - 1 (mod 2^32) lost step - 1
    frames; 0, 1, a backwards step or a restart's jump lost none."""
    lost = 0
    for a, b in itertools.pairwise(sequences):
        step = (b - a) % (1 << 32)
        lost += step - 1 if 1 < step < (1 << 16) else 0
    return lost


CASES = {
    "contiguous": list(range(100, 140)),
    "gaps": [0, 1, 2, 5, 6, 7, 20, 21, 22, 23, 30],
    "wrap": [2**32 - 3, 2**32 - 2, 2**32 - 1, 0, 1, 3],
    "duplicate and backwards": [10, 11, 11, 12, 9, 10, 13],
    "restart": [500_000, 500_001, 3, 4, 5, 70_000, 70_001],
    "largest gap": [0, (1 << 16) - 1, 1 << 16, (1 << 17) + 1],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sequence_gaps_follow_the_rule_however_the_reads_split(name: str) -> None:
    seqs = CASES[name]
    rng = np.random.default_rng(len(seqs))
    data = frames(seqs)
    for _ in range(5):
        driver, got = make_driver()
        cuts = sorted(rng.choice(np.arange(1, len(data)), rng.integers(0, len(data) - 1), replace=False))
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            driver.feed(b"".join(data[a:b]), T0)
        assert driver.ctx.stats.drops.get("sequence_gap", 0) == lost_by_rule(seqs)
        assert sum(len(r.reports) for r in got) == len(seqs)


def test_stale_reports_at_the_age_bound() -> None:
    bound = int(MAX_AGE_S * 1e9)
    # Reads whose oldest, newest, both or neither report is stale, and each at the bound.
    reads = [
        [0, bound - 1, bound, -bound, 3, -7],
        [0, 3, bound + 1],
        [-bound - 1, 0, 3],
        [-bound - 1, 0, 5 * bound],
        *([d] for d in (bound, bound + 1, -bound, -bound - 1)),
    ]
    driver, got = make_driver()
    seq = 0
    for offsets in reads:
        driver.feed(b"".join(frames(list(range(seq, seq + len(offsets))), [T0 + d for d in offsets])), T0)
        seq += len(offsets)
    everything = [d for offsets in reads for d in offsets]
    fresh = [abs(d) * 1e-9 <= MAX_AGE_S for d in everything]
    assert driver.ctx.stats.drops["stale"] == fresh.count(False) == 6
    published = np.concatenate([r.reports.t_ns for r in got]) - T0
    assert published.tolist() == [d for d, ok in zip(everything, fresh, strict=True) if ok]

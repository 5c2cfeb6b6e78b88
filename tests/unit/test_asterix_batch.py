"""Datagrams received together are normalised as one batch (issue 18): the same
reports, counts and drops as one datagram at a time, in fewer, larger batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from drivers.asterix import AsterixCodec, ServiceMessage034, TargetReport048
from drivers.base import Role
from gateway.config import parse_config
from gateway.devices.base import ReportsIn
from gateway.health import DeviceStats
from gateway.supervisor import Gateway

T0 = 1_800_000_000_000_000_000


def _driver() -> tuple[Any, DeviceStats]:
    """An ASTERIX device at a fixed own-ship position (as benchmarks/bench_multisource.py's)."""
    dev = {
        "id": "net",
        "protocol": "asterix",
        "transport": {"kind": "udp", "bind_host": "127.0.0.1", "bind_port": 0},
        "ownship": {"lat_deg": 54.1, "lon_deg": 10.2},
        "max_report_age_s": 5.0,
    }
    gw = Gateway(parse_config({"gateway_id": "gw", "devices": [dev]}))
    stats = gw.stats["net"] = DeviceStats("net", "asterix", "udp")
    return gw._make_driver(gw.config.devices[0], stats), stats


def _datagrams() -> list[list[bytes]]:
    """Chunks of datagrams as one readiness finds them: CAT048 of two radars,
    stale and untracked plots among them (counted drops), a CAT034 north marker
    now and then (health between records)."""
    enc = AsterixCodec(Role.DEVICE)
    rng = np.random.default_rng(1)
    chunks = []
    for c in range(6):
        chunk = []
        for d in range(8):
            t = T0 + (c * 8 + d) * 10_000_000
            sic = 1 + d % 2
            recs = [
                TargetReport048(
                    25,
                    sic,
                    t - (7 * 10**9 if k == 0 and d == 3 else 0),  # one stale plot
                    float(rng.uniform(20e3, 90e3)),
                    float(rng.uniform(0, 6.2)),
                    3000.0,
                    None if k == 1 and d == 5 else 1 + k,  # one untracked plot
                )
                for k in range(12)
            ]
            chunk.append(enc.send(recs))
            if d == 6 and c % 2:
                chunk.append(enc.send([ServiceMessage034(25, sic, 1, t)]))
        chunks.append(chunk)
    return chunks


def _rows(out: list[ReportsIn], drv: Any) -> dict[str, np.ndarray]:
    a = [r.reports for r in out]
    return {
        "sensor": np.array([drv.sensor_names[int(i)] for r in a for i in r.sensor]),
        "track": np.concatenate([r.sensor_track_id for r in a]),
        "t": np.concatenate([r.t_ns for r in a]),
        "x": np.concatenate([r.x for r in a]),
        "P": np.concatenate([r.P for r in a]),
    }


def test_a_batch_of_datagrams_gives_the_reports_and_counts_of_one_at_a_time() -> None:
    one, s1 = _driver()
    many, s2 = _driver()
    out_one: list[ReportsIn] = []
    out_many: list[ReportsIn] = []
    for c, chunk in enumerate(_datagrams()):
        t_rx = T0 + (c * 8 + 8) * 10_000_000  # received together: one receipt time
        for dg in chunk:
            out_one += one.handle_datagram(dg, t_rx)
        out_many += many.handle_datagrams(chunk, t_rx)
    a, b = _rows(out_one, one), _rows(out_many, many)
    assert len(a["t"]) == 6 * 8 * 12 - 6 * 2  # a stale and an untracked plot a chunk left out
    # By (sensor, track, time): the join reorders only batches of different sources.
    ia = np.lexsort((a["t"], a["track"], a["sensor"]))
    ib = np.lexsort((b["t"], b["track"], b["sensor"]))
    for key in a:
        np.testing.assert_array_equal(a[key][ia], b[key][ib])
    assert len(out_many) <= len(out_one) / 3  # fewer, larger batches
    assert (s1.frames_in, s1.bytes_in, s1.reports_out) == (s2.frames_in, s2.bytes_in, s2.reports_out)
    assert dict(s1.drops) == dict(s2.drops) == {"stale": 6, "untracked_plot": 6}
    assert s1.state == s2.state

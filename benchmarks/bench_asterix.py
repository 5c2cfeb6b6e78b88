"""ASTERIX codec throughput on one core: records/s decoded and encoded.

Run: .venv/bin/python benchmarks/bench_asterix.py [--records-per-datagram N] [--seconds S]

Prints a table: our decode path (batch and per-record events; with the
same-layout fast path and, for comparison, walking every record), libasterix's
own strict parse of the same bytes for comparison, and encode (libasterix).
Figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

from asterix.base import Bits, RawDatablock

from drivers.asterix import AsterixCodec, SystemTrack062, TargetReport048
from drivers.asterix.codec import spec_for
from drivers.base import Role

T0 = 1_700_000_000_000_000_000


def rate(fn: Callable[[], object], records: int, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds:
        fn()
        n += 1
    return n * records / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records-per-datagram", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    k = a.records_per_datagram
    dev, gw = AsterixCodec(Role.DEVICE), AsterixCodec(Role.GATEWAY)
    walker = AsterixCodec(Role.GATEWAY, fast_path=False)
    tracks = [
        SystemTrack062(
            1,
            2,
            i,
            T0 + i * 1000,
            lat_rad=0.7 + i * 1e-5,
            lon_rad=0.2,
            vx_mps=200.0,
            vy_mps=-5.0,
            geo_alt_m=9000.0,
            sigma_x_m=50.0,
            sigma_y_m=50.0,
            sigma_vx_mps=2.0,
            sigma_vy_mps=2.0,
        )
        for i in range(k)
    ]
    plots = [
        TargetReport048(
            3, 4, T0, range_m=1000.0 * (i + 1), azimuth_rad=math.radians(i), height_m=3000.0, track_number=i
        )
        for i in range(k)
    ]
    d62, d48 = dev.send(tracks), dev.send(plots)
    c62 = spec_for(62, (1, 21))

    def lib_parse() -> None:
        dbs = RawDatablock.parse(Bits.from_bytes(d62))
        assert not isinstance(dbs, ValueError)
        recs = c62.cv_uap.parse(dbs[0].get_raw_records())
        assert not isinstance(recs, ValueError)

    s = a.seconds
    rows = [
        ("decode CAT062 batch (hilgw)", rate(lambda: gw.receive_datagram_batch(d62, T0), k, s)),
        ("decode CAT062 events (hilgw)", rate(lambda: gw.receive_datagram(d62, T0), k, s)),
        ("decode CAT048 batch (hilgw)", rate(lambda: gw.receive_datagram_batch(d48, T0), k, s)),
        (
            "decode CAT062 batch (hilgw, walker only)",
            rate(lambda: walker.receive_datagram_batch(d62, T0), k, s),
        ),
        (
            "decode CAT048 batch (hilgw, walker only)",
            rate(lambda: walker.receive_datagram_batch(d48, T0), k, s),
        ),
        ("parse CAT062 libasterix strict (no value access)", rate(lib_parse, k, s)),
        ("encode CAT062 (libasterix)", rate(lambda: dev.send(tracks), k, s)),
        ("encode CAT048 (libasterix)", rate(lambda: dev.send(plots), k, s)),
    ]
    print(f"{'path':<50} {'records/s':>12}   ({k} records per datagram)")
    for name, r in rows:
        print(f"{name:<50} {r:>12,.0f}")


if __name__ == "__main__":
    main()

"""Throughput of normalisation: polar batch -> ReportArrays (and -> protobuf).

Run: ``.venv/bin/python benchmarks/bench_normalise.py``. Prints reports/s of
``normalise_polar`` for batch sizes 1, 100 and 10 000, and of
``reports_to_proto`` (the per-report protobuf build) for comparison. Each
figure is the best of several timed repeats of about 0.2 s, so other load on
the machine lowers it less than a mean would.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.normalise import POLAR_FIELDS, POLAR_SIGMA_FIELDS, normalise_polar, reports_to_proto
from hilgw.geo import site_geometry

BATCH_DTYPE = np.dtype(
    [
        ("sensor_track_id", "<u4"),
        ("sequence", "<u8"),
        ("sensor_time_ns", "<i8"),
        *((name, "<f8") for name in POLAR_FIELDS),
        *((name, "<f8") for name in POLAR_SIGMA_FIELDS),
        ("quality", "<f8"),
        ("rates_valid", "?"),
        ("coasting", "?"),
    ]
)


def make_batch(n: int) -> npt.NDArray[np.void]:
    rng = np.random.default_rng(n)
    a = np.zeros(n, dtype=BATCH_DTYPE)
    a["sensor_track_id"] = np.arange(n)
    a["sequence"] = np.arange(n)
    a["sensor_time_ns"] = 1_718_000_000_000_000_000 + np.arange(n)
    a["range_m"] = rng.uniform(1e3, 3e5, n)
    a["azimuth_rad"] = rng.uniform(0, 2 * np.pi, n)
    a["elevation_rad"] = rng.uniform(0, 1.2, n)
    a["range_rate_mps"] = rng.uniform(-1500, 1500, n)
    a["azimuth_rate_radps"] = rng.uniform(-0.01, 0.01, n)
    a["elevation_rate_radps"] = rng.uniform(-0.01, 0.01, n)
    for name, s in zip(POLAR_SIGMA_FIELDS, (20.0, 1e-3, 1e-3, 1.0, 1e-4, 1e-4), strict=True):
        a[name] = s
    a["quality"] = 0.9
    a["rates_valid"] = rng.random(n) < 0.5
    return a


def rate(fn: Callable[[], object], n: int, budget_s: float = 0.2, repeats: int = 5) -> float:
    """Best-of-repeats reports/s of ``fn`` processing ``n`` reports per call."""
    fn()  # warm up
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(budget_s / one))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t0) / loops)
    return n / best


def main() -> None:
    geom = site_geometry("radar-1", 52.0, 4.3, 15.0, yaw_deg=10.0)
    print(f"{'batch N':>8} {'normalise_polar rep/s':>22} {'us/batch':>10} {'reports_to_proto rep/s':>23}")
    for n in (1, 100, 10_000):
        arr = make_batch(n)
        r_norm = rate(partial(normalise_polar, geom, 0, arr), n)
        reports = normalise_polar(geom, 0, arr)
        r_proto = rate(partial(reports_to_proto, reports, ["radar-1"], 0, "gw", source=arr), n)
        print(f"{n:>8} {r_norm:>22,.0f} {1e6 * n / r_norm:>10.1f} {r_proto:>23,.0f}")


if __name__ == "__main__":
    main()

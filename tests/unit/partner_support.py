"""Random fused pictures, markings and release profiles for the partner tests
and benchmarks/bench_partner_filter.py, and an independent reference filter
that decides on the TrackBatch protobuf (the markings each contributor
carries), not on the arrays the production filter reads."""

from __future__ import annotations

import numpy as np
import pymap3d

from gateway.fusion.api import TrackArrays
from gateway.partners.release import SourceMarkings
from gateway.sections.partners import ReleaseProfile
from hilgw.v1 import track_pb2

PARTNERS = ("alpha", "bravo", "charlie")
STATUS_NAMES = {1: "tentative", 2: "confirmed", 3: "coasting"}


def random_markings(rng: np.random.Generator, n_sensors: int) -> tuple[SourceMarkings | None, ...]:
    out: list[SourceMarkings | None] = []
    for _ in range(n_sensors):
        if rng.random() < 0.15:
            out.append(None)  # an unmarked source
            continue
        rel = frozenset(p for p in PARTNERS if rng.random() < 0.5)
        out.append(SourceMarkings(int(rng.integers(0, 6)), rel, bool(rng.random() < 0.1)))
    return tuple(out)


def random_tracks(rng: np.random.Generator, m: int, n_sensors: int, t_ns: int) -> TrackArrays:
    """M tracks around northern Europe (some far away), 0-3 contributors each."""
    lat = rng.uniform(40, 75, m)
    lon = rng.uniform(-20, 40, m)
    alt = rng.uniform(0, 300_000, m)
    x, y, z = pymap3d.geodetic2ecef(lat, lon, alt)
    v = rng.normal(0, 800, (m, 3))
    X = np.column_stack([x, y, z, v])
    bad = rng.random(m) < 0.02
    X[bad, int(rng.integers(0, 6))] = np.nan
    k = rng.integers(0, 4, m)
    rows = np.repeat(np.arange(m, dtype=np.int32), k)
    return TrackArrays(
        track_id=rng.choice(10_000_000, m, replace=False).astype(np.uint64) + 1,
        status=rng.integers(1, 5, m).astype(np.int8),
        x=X,
        P=np.broadcast_to(np.eye(6), (m, 6, 6)).copy(),
        t_ns=t_ns - rng.integers(0, 400_000_000, m).astype(np.int64),
        first_ns=np.full(m, t_ns - 10**10, np.int64),
        update_count=np.ones(m, np.uint32),
        quality=np.ones(m),
        model=np.ones(m, np.int8),
        contrib_row=rows,
        contrib_sensor=rng.integers(0, max(n_sensors, 1), len(rows)).astype(np.int32),
        contrib_sensor_track_id=np.zeros(len(rows), np.uint32),
        contrib_t_ns=np.full(len(rows), t_ns, np.int64),
    )


def random_profile(rng: np.random.Generator) -> ReleaseProfile:
    fields = ["position"] + [f for f in ("velocity", "status") if rng.random() < 0.5]
    statuses = [s for s in ("tentative", "confirmed", "coasting") if rng.random() < 0.6] or ["confirmed"]
    raw: dict[str, object] = {
        "fields": fields,
        "statuses": statuses,
        "position_quantum_m": float(rng.choice([1.0, 10.0, 100.0, 1000.0])),
        "velocity_quantum_mps": float(rng.choice([0.5, 5.0, 50.0])),
        "time_quantum_s": float(rng.choice([0.001, 0.5, 1.0, 10.0])),
        "max_classification": ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP_SECRET"][
            int(rng.integers(0, 5))
        ],
        "mixed_sources": "release" if rng.random() < 0.5 else "withhold",
    }
    area = rng.random()
    if area < 0.33:
        raw["circle"] = {"lat_deg": 57.0, "lon_deg": 10.0, "radius_m": float(rng.uniform(1e5, 2e6))}
    elif area < 0.66:
        raw["polygon"] = {"vertices": [(50.0, 0.0), (50.0, 25.0), (65.0, 30.0), (70.0, 5.0)]}
    return ReleaseProfile.model_validate(raw)


def reference_release(
    batch: track_pb2.TrackBatch, profile: ReleaseProfile, partner: str
) -> dict[int, tuple[float, float, float]]:
    """Track id -> position carried to the rounded picture time, for every track
    that the profile allows, decided one track at a time on the protobuf."""
    max_cls = profile.max_classification_value
    statuses = {s for s, name in STATUS_NAMES.items() if name in profile.statuses}
    tq = max(1, round(profile.time_quantum_s * 1e9))
    t_rel = (batch.time_ns + tq // 2) // tq * tq
    out: dict[int, tuple[float, float, float]] = {}
    for t in batch.tracks:
        s = t.state
        state = [s.x, s.y, s.z, s.vx, s.vy, s.vz]
        if not all(np.isfinite(state)) or t.status not in statuses or not t.contributors:
            continue
        marks = [c.markings for c in t.contributors]
        if any(m.classification == 0 or m.classification > max_cls for m in marks):
            continue
        rel = [partner in m.releasable_to for m in marks]
        if not any(rel) or (profile.mixed_sources == "withhold" and not all(rel)):
            continue
        dt = (t_rel - t.last_update_time_ns) * 1e-9
        pos = (s.x + s.vx * dt, s.y + s.vy * dt, s.z + s.vz * dt)
        lat, lon, _ = pymap3d.ecef2geodetic(*pos)
        if profile.circle is not None:
            c = profile.circle
            d = _great_circle_m(c.lat_deg, c.lon_deg, float(lat), float(lon))
            if d > c.radius_m:
                continue
        if profile.polygon is not None and not _inside(profile.polygon.vertices, float(lat), float(lon)):
            continue
        out[t.track_id] = pos
    return out


def _great_circle_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    c = np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl)
    return float(6_371_008.8 * np.arccos(np.clip(c, -1.0, 1.0)))


def _inside(vertices: list[tuple[float, float]], lat: float, lon: float) -> bool:
    inside = False
    for i in range(len(vertices)):
        (yi, xi), (yj, xj) = vertices[i], vertices[i - 1]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
    return inside

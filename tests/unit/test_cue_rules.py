"""Cue rules: candidates (confirmed, quality, category, freshness, coverage volume),
one live cue per track per launcher, cancel when the track drops or leaves."""

from __future__ import annotations

import numpy as np
import pymap3d
import pytest

from gateway.cue.rules import evaluate, in_coverage
from gateway.sections.cue import CoverageConfig, CueRulesConfig
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import (
    L1_SECRET,
    SITE1,
    T0,
    WIRE_KEY_ID,
    Harness,
    cue_config,
    make_batch,
    make_track,
    wire_tag_verifies,
)

COV = CoverageConfig(
    lat_deg=SITE1[0],
    lon_deg=SITE1[1],
    alt_m=0.0,
    min_range_m=1000,
    max_range_m=50_000,
    az_from_deg=300,
    az_to_deg=60,
    min_elevation_deg=1,
    max_height_m=30_000,
)


def _point(az_deg: float, el_deg: float, rng_m: float) -> list[float]:
    x, y, z = pymap3d.aer2ecef(az_deg, el_deg, rng_m, SITE1[0], SITE1[1], 0.0)
    return [float(x), float(y), float(z)]


@pytest.mark.parametrize(
    ("az", "el", "rng", "inside"),
    [
        (0, 10, 20_000, True),
        (330, 10, 20_000, True),  # sector wraps through north
        (59, 10, 20_000, True),
        (61, 10, 20_000, False),
        (180, 10, 20_000, False),
        (0, 10, 500, False),  # inside min range
        (0, 10, 49_000, True),
        (0, 10, 51_000, False),
        (0, 0.5, 20_000, False),  # below min elevation
        (0, 80, 40_000, False),  # above max height (~39 km)
    ],
)
def test_in_coverage(az: float, el: float, rng: float, inside: bool) -> None:
    assert in_coverage(COV, np.array([_point(az, el, rng)])).tolist() == [inside]


def test_in_coverage_vectorised_and_empty() -> None:
    pts = np.array([_point(0, 10, 20_000), _point(180, 10, 20_000), _point(10, 5, 30_000)])
    assert in_coverage(COV, pts).tolist() == [True, False, True]
    assert in_coverage(COV, np.zeros((0, 3))).tolist() == []


def test_full_circle_by_default() -> None:
    cov = CoverageConfig(lat_deg=SITE1[0], lon_deg=SITE1[1], alt_m=0.0, max_range_m=50_000)
    pts = np.array([_point(a, 10, 20_000) for a in range(0, 360, 45)])
    assert in_coverage(cov, pts).all()


def test_evaluate_reasons() -> None:
    rules = CueRulesConfig(min_quality=0.5, categories=["ballistic"], max_track_age_s=2.0)
    cfg = cue_config()
    tracks = [
        make_track(1),
        make_track(2, status=track_pb2.TRACK_STATUS_TENTATIVE),
        make_track(3, quality=0.2),
        make_track(4, model=track_pb2.MOTION_MODEL_CONSTANT_VELOCITY),
        make_track(5, t_ns=T0 - 3 * 10**9),
        make_track(6, lat=20.0, lon=20.0),
        make_track(7, status=track_pb2.TRACK_STATUS_DROPPED),
        make_track(8, status=track_pb2.TRACK_STATUS_COASTING),
    ]
    out = evaluate(rules, list(cfg.launchers), make_batch(tracks, T0))
    assert out["L1"] == {
        1: None,
        2: "not_confirmed",
        3: "low_quality",
        4: "category",
        5: "track_stale",
        6: "outside_volume",
        7: "track_dropped",
        8: "not_confirmed",
    }
    assert out["L2"][1] == "outside_volume"  # L2 is 150 km away


def test_one_live_cue_per_track_per_launcher() -> None:
    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    for _ in range(10):
        h.advance(0.1)
        h.heartbeat()
        h.tracks(make_track(1, t_ns=h.now.wall_ns), make_track(2, lat=54.3, t_ns=h.now.wall_ns))
    assert sorted(c.system_track_id for c in h.launchers["L1"].accepted) == [1, 2]
    assert not h.launchers["L2"].accepted
    assert len(h.core.open_cues()) == 2


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda t: [], "track_dropped"),
        (lambda t: [make_track(1, lat=20.0, t_ns=t)], "outside_volume"),
        (lambda t: [make_track(1, status=track_pb2.TRACK_STATUS_COASTING, t_ns=t)], "not_confirmed"),
        (lambda t: [make_track(1, quality=0.1, t_ns=t)], "low_quality"),
    ],
)
def test_cancel_when_track_drops_or_leaves(change: object, why: str) -> None:
    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    (cue,) = h.launchers["L1"].accepted
    h.advance(0.1)
    h.heartbeat()
    h.tracks(*change(h.now.wall_ns))  # type: ignore[operator]
    (cancel,) = h.launchers["L1"].cancels
    assert cancel.cue_id == cue.cue_id
    assert cancel.reason == why
    assert wire_tag_verifies(cancel, L1_SECRET)  # its one MAC: the wire tag
    assert cancel.sequence > cue.sequence
    assert not h.core.open_cues()
    ended = [r for r in h.audit.records if r["kind"] == "cancelled"]
    assert ended[-1]["data"]["why"] == why


def test_stale_picture_cancels_everything() -> None:
    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    for _ in range(25):  # no TrackBatch for 2.5 s (max_picture_age_s = 2)
        h.advance(0.1)
        h.heartbeat()
    assert [c.reason for c in h.launchers["L1"].cancels] == ["picture_stale"]


def test_cue_carries_the_track_state_and_a_window() -> None:
    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    trk = make_track(1, t_ns=h.now.wall_ns - 10**8)
    h.tracks(trk)
    (cue,) = h.launchers["L1"].accepted
    assert cue.system_track_id == 1
    assert cue.state == trk.state
    assert cue.time_of_validity_ns == trk.last_update_time_ns
    assert cue.valid_until_ns - cue.valid_from_ns == 5 * 10**9
    assert cue.key_id == str(WIRE_KEY_ID)  # the wire key (ICD §7.2): one MAC per cue
    assert cue.attempt == 0
    assert cue_pb2.EngagementCue.FromString(cue.SerializeToString()) == cue

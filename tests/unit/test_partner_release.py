"""The partner release filter (gateway/partners/release.py; docs/partners.md).

Table-driven cases for each withholding reason, the precision and time
rules, the pseudonyms, and a property test: over random pictures, markings
and profiles, the vectorised filter releases exactly what an independent
per-track reference allows (deciding on the markings each contributor
carries in the TrackBatch), and nothing outside the profile ever appears.
The >= 10,000-case campaign is benchmarks/bench_partner_filter.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.fusion.api import TrackArrays
from gateway.fusion_stage import tracks_to_proto
from gateway.partners.release import Picture, ReleaseFilter, SourceMarkings
from gateway.sections.partners import ReleaseProfile
from hilgw.v1 import partner_pb2
from tests.unit.partner_support import (
    PARTNERS,
    random_markings,
    random_profile,
    random_tracks,
    reference_release,
)

T0 = 1_780_000_000_123_456_789
SECRET, UNCLAS, RESTRICTED = 4, 1, 2
# Copenhagen-ish, 10 km up, moving east at 200 m/s (ECEF).
POS = (3_513_638.0, 778_956.0, 5_248_216.0)


def one_track(
    *,
    status: int = 2,
    sensors: tuple[int, ...] = (0,),
    x: tuple[float, ...] = (*POS, -50.0, 200.0, 10.0),
    t_ns: int = T0,
) -> TrackArrays:
    return TrackArrays(
        track_id=np.array([42], np.uint64),
        status=np.array([status], np.int8),
        x=np.array([x], float),
        P=np.eye(6)[None],
        t_ns=np.array([t_ns], np.int64),
        first_ns=np.array([T0], np.int64),
        update_count=np.ones(1, np.uint32),
        quality=np.ones(1),
        model=np.ones(1, np.int8),
        contrib_row=np.zeros(len(sensors), np.int32),
        contrib_sensor=np.array(sensors, np.int32),
        contrib_sensor_track_id=np.zeros(len(sensors), np.uint32),
        contrib_t_ns=np.full(len(sensors), T0, np.int64),
    )


OPEN = SourceMarkings(UNCLAS, frozenset({"alpha"}))
CLOSED = SourceMarkings(UNCLAS, frozenset({"bravo"}))


@pytest.mark.parametrize(
    ("profile", "tracks", "markings", "reason"),
    [
        ({}, one_track(), (OPEN,), None),
        ({}, one_track(status=1), (OPEN,), "status"),
        ({"statuses": ["tentative"]}, one_track(status=1), (OPEN,), None),
        ({}, one_track(status=4), (OPEN,), "status"),  # dropped is never releasable
        ({}, one_track(sensors=()), (OPEN,), "classification"),  # no source at all
        ({}, one_track(), (None,), "classification"),  # an unmarked source
        ({}, one_track(), (SourceMarkings(0, frozenset({"alpha"})),), "classification"),
        ({}, one_track(), (SourceMarkings(SECRET, frozenset({"alpha"})),), "classification"),
        (
            {"max_classification": "SECRET"},
            one_track(),
            (SourceMarkings(SECRET, frozenset({"alpha"})),),
            None,
        ),
        ({}, one_track(), (CLOSED,), "sources"),
        ({}, one_track(sensors=(0, 1)), (OPEN, CLOSED), "mixed"),
        ({"mixed_sources": "release"}, one_track(sensors=(0, 1)), (OPEN, CLOSED), None),
        ({"mixed_sources": "release"}, one_track(sensors=(1,)), (OPEN, CLOSED), "sources"),
        ({"mixed_sources": "release"}, one_track(sensors=(0, 1)), (OPEN, None), "classification"),
        ({}, one_track(x=(np.nan, *POS[1:], 0.0, 0.0, 0.0)), (OPEN,), "invalid"),
        ({"circle": {"lat_deg": 55.6, "lon_deg": 12.5, "radius_m": 100_000}}, one_track(), (OPEN,), None),
        ({"circle": {"lat_deg": 48.0, "lon_deg": 2.0, "radius_m": 100_000}}, one_track(), (OPEN,), "area"),
        ({"polygon": {"vertices": [(54, 10), (54, 15), (57, 15), (57, 10)]}}, one_track(), (OPEN,), None),
        ({"polygon": {"vertices": [(45, 0), (45, 5), (50, 5)]}}, one_track(), (OPEN,), "area"),
    ],
)
def test_each_reason(
    profile: dict[str, object],
    tracks: TrackArrays,
    markings: tuple[SourceMarkings | None, ...],
    reason: str | None,
) -> None:
    f = ReleaseFilter("alpha", "nation-x", ReleaseProfile.model_validate(profile))
    rel = f.apply(Picture(1, T0, tracks, markings))
    if reason is None:
        assert rel.released == 1
        assert not rel.withheld
        assert len(rel.picture.track_ref) == 1
    else:
        assert rel.released == 0
        assert dict(rel.withheld) == {reason: 1}
        assert len(rel.picture.track_ref) == 0
        assert len(rel.picture.x_q) == 0


def test_precision_time_and_fields() -> None:
    prof = ReleaseProfile(position_quantum_m=100.0, time_quantum_s=1.0)  # position only
    f = ReleaseFilter("alpha", "nation-x", prof)
    t_state = T0 - 300_000_000  # state 0.3 s older than the picture
    pic = f.apply(Picture(1, T0, one_track(t_ns=t_state), (OPEN,))).picture
    t_rel = (T0 + 500_000_000) // 1_000_000_000 * 1_000_000_000
    assert pic.time_ns == t_rel
    assert pic.time_quantum_ns == 1_000_000_000
    dt = (t_rel - t_state) * 1e-9
    want = np.rint((np.array(POS) + np.array([-50.0, 200.0, 10.0]) * dt) / 100.0)
    assert [pic.x_q[0], pic.y_q[0], pic.z_q[0]] == want.astype(int).tolist()
    # Only the allow-listed fields are filled; the rest stay empty.
    assert len(pic.vx_q) == len(pic.status) == 0
    assert pic.velocity_quantum_mps == 0
    assert pic.releasing_party == "nation-x"
    assert pic.classification == UNCLAS
    f2 = ReleaseFilter("alpha", "x", ReleaseProfile(fields=["position", "velocity", "status"]))
    pic2 = f2.apply(Picture(1, T0, one_track(), (OPEN,))).picture
    assert list(pic2.vx_q) == [-10]
    assert list(pic2.vy_q) == [40]
    assert list(pic2.vz_q) == [2]
    assert list(pic2.status) == [partner_pb2.PARTNER_TRACK_STATUS_CONFIRMED]


def test_pseudonyms_stable_per_partner_and_unlinkable() -> None:
    key = b"k" * 32
    a = ReleaseFilter("alpha", "x", ReleaseProfile(), ref_key=key)
    b = ReleaseFilter("bravo", "x", ReleaseProfile(), ref_key=key)
    both = SourceMarkings(UNCLAS, frozenset({"alpha", "bravo"}))
    r1 = a.apply(Picture(1, T0, one_track(), (both,))).picture.track_ref[0]
    r2 = a.apply(Picture(2, T0 + 10**9, one_track(), (both,))).picture.track_ref[0]
    rb = b.apply(Picture(1, T0, one_track(), (both,))).picture.track_ref[0]
    assert r1 == r2  # stable for the track's life
    assert rb != r1
    assert r1 != 42
    assert a.sequence == 2
    assert b.sequence == 1


def test_partner_message_has_only_allow_listed_fields() -> None:
    """A field added to PartnerPicture is a release decision: it must be added here on purpose."""
    assert set(partner_pb2.PartnerPicture.DESCRIPTOR.fields_by_name) == {
        "releasing_party", "sequence", "time_ns", "time_quantum_ns", "classification",
        "position_quantum_m", "velocity_quantum_mps", "track_ref",
        "x_q", "y_q", "z_q", "vx_q", "vy_q", "vz_q", "status",
    }  # fmt: skip
    assert not partner_pb2.DESCRIPTOR.dependencies  # imports nothing of the internal model


def check_case(seed: int, m: int = 40) -> int:
    """One random case; returns how many tracks were examined. Raises on any violation."""
    rng = np.random.default_rng(seed)
    n_sensors = int(rng.integers(1, 6))
    markings = random_markings(rng, n_sensors)
    tracks = random_tracks(rng, m, n_sensors, T0)
    profile = random_profile(rng)
    partner = PARTNERS[int(rng.integers(0, len(PARTNERS)))]
    batch = tracks_to_proto(
        tracks,
        [f"s{i}" for i in range(n_sensors)],
        "gw",
        1,
        T0,
        [mk.to_proto() if mk else None for mk in markings],
    )
    expected = reference_release(batch, profile, partner)
    f = ReleaseFilter(partner, "nation-x", profile, ref_key=b"\x01" * 32)
    rel = f.apply(Picture(1, T0, tracks, markings))
    pic = rel.picture
    by_ref = {f._ref(tid): tid for tid in expected}
    got = list(pic.track_ref)
    assert sorted(got) == sorted(by_ref), (seed, sorted(expected), got)
    assert rel.released + sum(rel.withheld.values()) == m
    q = profile.position_quantum_m
    for i, ref in enumerate(got):
        want = np.rint(np.array(expected[by_ref[ref]]) / q)
        assert np.abs(np.array([pic.x_q[i], pic.y_q[i], pic.z_q[i]]) - want).max() <= 1, seed
    n = len(got)
    assert len(pic.vx_q) == (n if "velocity" in profile.fields else 0)
    assert len(pic.status) == (n if "status" in profile.fields else 0)
    assert pic.classification <= profile.max_classification_value
    assert set(pic.status) <= {{"tentative": 1, "confirmed": 2, "coasting": 3}[s] for s in profile.statuses}
    return m


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_property_nothing_outside_the_profile(seed: int) -> None:
    check_case(seed)

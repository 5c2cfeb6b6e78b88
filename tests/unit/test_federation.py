"""Federation without a network (docs/federation.md): site pictures in with
lineage (dedupe, order, gaps), the theatre fuses two sites' tracks of one
object into one theatre track, the cue picture bridge, the single-source
rule, and the config rules that keep a theatre from cueing what it does
not own."""

from __future__ import annotations

import numpy as np
import pymap3d
import pytest

from gateway.bus import Topic
from gateway.config import FusionConfig, parse_config
from gateway.cue.rules import _track_reason
from gateway.devices.base import ReportsIn
from gateway.federation.fastpath import NatsLink, live_subject
from gateway.federation.picture import PictureBridge
from gateway.federation.sites import SiteInput
from gateway.fusion.api import SensorGeometry
from gateway.fusion.config import FusionConfig as EngineConfig
from gateway.fusion_stage import FusionStage
from gateway.health import DeviceStats
from gateway.partners.release import SourceMarkings
from gateway.sections.cue import CuePictureConfig, CueRulesConfig
from gateway.sections.federation import FederationConfig, NatsConfig, SiteConfig
from gateway.sections.partners import MarkingsConfig
from hilgw.errors import ConfigError
from hilgw.v1 import health_pb2, track_pb2

T0 = 1_780_000_000_000_000_000
EPOCH = 1_779_999_000_000_000_000


def site_batch(
    gw: str, seq: int, t_ns: int, pos: np.ndarray, vel: np.ndarray, *, epoch: int = EPOCH, track_id: int = 5
) -> track_pb2.TrackBatch:
    b = track_pb2.TrackBatch(gateway_id=gw, batch_sequence=seq, time_ns=t_ns, epoch_ns=epoch)
    t = b.tracks.add(track_id=track_id, status=track_pb2.TRACK_STATUS_CONFIRMED, quality=0.9)
    s = t.state
    s.x, s.y, s.z = (float(v) for v in pos)
    s.vx, s.vy, s.vz = (float(v) for v in vel)
    s.covariance.extend(np.diag([50.0**2] * 3 + [5.0**2] * 3).ravel().tolist())
    t.last_update_time_ns = t_ns
    return b


def site_input(
    gw: str = "site-a", now: int = T0, mono: list[float] | None = None
) -> tuple[SiteInput, Topic[ReportsIn], DeviceStats]:
    fed = FederationConfig(sites=[SiteConfig(gateway_id=gw)], gap_wait_s=5.0)
    reports: Topic[ReportsIn] = Topic("reports")
    stats = DeviceStats(f"site:{gw}", "federation", "mqtt")
    clock = mono if mono is not None else [0.0]
    h = SiteInput(fed.sites[0], fed, reports, stats, 3, wall_ns=lambda: now, mono=lambda: clock[0])
    return h, reports, stats


POS = np.array(pymap3d.geodetic2ecef(57.0, 10.0, 9000.0))
VEL = np.array([100.0, -50.0, 0.0])


def test_site_batches_used_once_in_order_and_gaps_counted() -> None:
    mono = [0.0]
    h, reports, stats = site_input(mono=mono)
    sub = reports.subscribe("t")
    # A duplicate (the fast path and the MQTT session both bring 2), 3 and 4
    # skipped, 4 arriving after 5 (a failover's redelivery): late, not lost.
    for seq in (1, 2, 2, 5, 4, 6):
        h("hilgw/site-a/tracks", site_batch("site-a", seq, T0, POS, VEL).SerializeToString())
    used = sub.get_all()
    assert len(used) == 4  # 1, 2, 5, 6
    assert dict(stats.drops) == {"duplicate": 1, "late": 1}
    assert list(h.missing) == [3]  # not yet lost: it may still come by the other path
    mono[0] = 4.9
    h.settle()
    assert "gap" not in stats.drops
    mono[0] = 5.1
    h.settle()  # waited gap_wait_s in vain: lost, counted
    assert dict(stats.drops) == {"duplicate": 1, "late": 1, "gap": 1}
    assert not h.missing
    h("hilgw.site-a.tracks_live", site_batch("site-a", 3, T0, POS, VEL).SerializeToString())
    assert stats.drops["out_of_order"] == 1  # too late: already counted lost
    assert h.used_by_path == {"mqtt": 4}
    assert used[0].device_id == "site:site-a"
    r = used[0].reports
    assert r.sensor.tolist() == [3]
    assert r.sensor_track_id.tolist() == [5]
    assert np.allclose(r.x[0], [*POS, *VEL])
    assert np.allclose(np.sqrt(np.diag(r.P[0])), [50, 50, 50, 5, 5, 5])


def test_site_restart_starts_a_new_epoch_and_old_epoch_is_refused() -> None:
    h, reports, stats = site_input()
    sub = reports.subscribe("t")
    h("t", site_batch("site-a", 40, T0, POS, VEL).SerializeToString())
    h("t", site_batch("site-a", 1, T0, POS, VEL, epoch=EPOCH + 10**9).SerializeToString())  # restarted
    h("t", site_batch("site-a", 41, T0, POS, VEL).SerializeToString())  # the old run, late
    assert len(sub.get_all()) == 2
    assert dict(stats.drops) == {"old_epoch": 1}


def test_missing_pictures_of_a_run_are_lost_when_the_site_restarts() -> None:
    h, _reports, stats = site_input()
    for seq in (1, 4):
        h("a.b", site_batch("site-a", seq, T0, POS, VEL).SerializeToString())
    assert sorted(h.missing) == [2, 3]
    h("a.b", site_batch("site-a", 1, T0, POS, VEL, epoch=EPOCH + 10**9).SerializeToString())
    assert dict(stats.drops) == {"gap": 2}
    assert not h.missing
    assert h.used_by_path == {"nats": 3}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x0a\xff", "decode"),
        (site_batch("site-b", 1, T0, POS, VEL).SerializeToString(), "wrong_gateway"),
        (site_batch("site-a", 1, T0 - 60 * 10**9, POS, VEL).SerializeToString(), "stale"),
    ],
)
def test_bad_site_input_counted_never_raised(payload: bytes, reason: str) -> None:
    h, reports, stats = site_input()
    sub = reports.subscribe("t")
    h("t", payload)
    assert sub.get_all() == []
    assert dict(stats.drops) == {reason: 1}
    assert stats.state == health_pb2.DEVICE_STATE_DEGRADED


def test_non_finite_site_track_left_out() -> None:
    h, reports, stats = site_input()
    sub = reports.subscribe("t")
    b = site_batch("site-a", 1, T0, POS, VEL)
    b.tracks[0].state.x = float("nan")
    h("t", b.SerializeToString())
    (batch,) = sub.get_all()
    assert len(batch.reports) == 0  # the picture still arrives (it moves the site's clock)
    assert dict(stats.drops) == {"bad_state": 1}


def test_theatre_fuses_two_sites_into_one_track() -> None:
    """Two sites hold the same object with independent errors: one theatre track, both sites in
    it, each contributor naming the site, the site's own track id and the site's markings."""
    reports: Topic[ReportsIn] = Topic("reports")
    stage = FusionStage(FusionConfig(publish_hz=1.0), "theatre", reports, Topic("tracks"))
    marked = MarkingsConfig(classification="RESTRICTED", releasable_to=["alpha"])
    fed = FederationConfig(
        sites=[SiteConfig(gateway_id="site-a", markings=marked), SiteConfig(gateway_id="site-b")]
    )
    stage.markings["site:site-a"] = SourceMarkings.from_config(marked)  # as gateway/wiring/federation.py
    inputs = []
    clock = [T0]
    for k, site in enumerate(fed.sites):
        idx = stage.engine.add_sensor(SensorGeometry(f"site:{site.gateway_id}", np.zeros(3), np.eye(3)))
        stats = DeviceStats(f"site:{site.gateway_id}", "federation", "mqtt")
        inputs.append((SiteInput(site, fed, reports, stats, idx, wall_ns=lambda: clock[0]), k))
    rng = np.random.default_rng(3)
    ids: set[int] = set()
    contributors: set[str] = set()
    for step in range(20):
        t = clock[0] = T0 + step * 10**9
        truth = POS + VEL * step
        for h, k in inputs:
            noisy = truth + rng.normal(0, 50, 3)
            h("t", site_batch(h.site.gateway_id, step + 1, t, noisy, VEL, track_id=7 + k).SerializeToString())
        batch = stage.step_once(t)
        live = [tr for tr in batch.tracks if tr.status == track_pb2.TRACK_STATUS_CONFIRMED]
        ids |= {tr.track_id for tr in live}
        if step > 5:
            assert len(live) == 1
            contributors = {(c.sensor_id, c.sensor_track_id): c for c in live[0].contributors}
    assert len(ids) == 1
    # The map from the theatre id to the site tracks that built it.
    assert set(contributors) == {("site:site-a", 7), ("site:site-b", 8)}
    a, b = contributors["site:site-a", 7], contributors["site:site-b", 8]
    assert a.markings.releasable_to == ["alpha"]
    assert a.markings.classification != 0
    assert not b.HasField("markings")  # a site without markings: never released (docs/partners.md)
    assert batch.epoch_ns == stage.epoch_ns


def test_cue_picture_bridge_uses_each_batch_once_in_order() -> None:
    tracks: Topic[track_pb2.TrackBatch] = Topic("cue_picture")
    sub = tracks.subscribe("t")
    bridge = PictureBridge(CuePictureConfig(gateway_id="theatre"), tracks)
    for seq in (1, 3, 2, 3):
        bridge("t", site_batch("theatre", seq, T0, POS, VEL).SerializeToString())
    bridge("t", site_batch("other", 9, T0, POS, VEL).SerializeToString())
    bridge("t", b"\xff")
    assert [b.batch_sequence for b in sub.get_all()] == [1, 3]
    assert dict(bridge.counts) == {"used": 2, "duplicate_or_old": 2, "wrong_gateway": 1, "decode": 1}


def test_single_source_track_is_not_a_candidate() -> None:
    t = track_pb2.SystemTrack(track_id=1, status=track_pb2.TRACK_STATUS_CONFIRMED, quality=1.0)
    t.last_update_time_ns = T0
    t.contributors.add(sensor_id="site:site-a")
    t.contributors.add(sensor_id="site:site-a", sensor_track_id=2)  # the same source twice is one source
    rules = CueRulesConfig(min_sources=2)
    assert _track_reason(rules, t, T0) == "single_source"
    t.contributors.add(sensor_id="site:site-b")
    assert _track_reason(rules, t, T0) is None


CUE = {"keys_file": "keys.toml", "audit_path": "audit.log"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cue": {**CUE, "picture": {"gateway_id": "theatre"}}}, "min_sources must be at least 2"),
        ({"mqtt": {"enabled": False}, "federation": {"sites": [{"gateway_id": "a"}]}}, "need [mqtt] enabled"),
        ({"gateway_id": "a", "federation": {"sites": [{"gateway_id": "a"}]}}, "this gateway itself"),
        ({"nats": {"servers": ["127.0.0.1"]}}, "is not host:port"),
        ({"nats": {"servers": ["127.0.0.1:70000"]}}, "is not host:port"),
        ({"nats": {"servers": []}}, "at least 1"),
        ({"mqtt": {"enabled": False}, "nats": {"servers": ["h:4222"]}}, "[nats] needs [mqtt] enabled"),
        ({"federation": {"sites": [{"gateway_id": "a"}, {"gateway_id": "a"}]}}, "appears twice"),
    ],
)
def test_federation_config_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert message in str(err.value)


def test_cue_picture_accepted_with_two_sources() -> None:
    cfg = parse_config({"cue": {**CUE, "picture": {"gateway_id": "theatre"}, "rules": {"min_sources": 2}}})
    assert cfg.cue is not None
    assert cfg.cue.picture is not None


COVERAGE = {"lat_deg": 54, "lon_deg": 10, "alt_m": 0, "max_range_m": 100_000}


def test_a_theatre_cannot_cue_a_launcher_it_does_not_own() -> None:
    raw = {
        "gateway_id": "theatre",
        "federation": {"sites": [{"gateway_id": "site-a"}]},
        "cue": {
            **CUE,
            "launchers": [{"id": "L1", "coverage": COVERAGE}],
        },
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "cue.launchers[L1]: no launcher device" in str(err.value)


def test_fast_path_queue_is_bounded_and_keeps_the_freshest() -> None:
    link = NatsLink(NatsConfig(servers=["127.0.0.1:1"], queue_size=2), "t")
    for k in range(3):
        link.publish(live_subject("hilgw", "site-a"), bytes([k]))
    assert link.dropped == {"queue_full": 1}
    assert list(link._queue) == [("hilgw.site-a.tracks_live", b"\x01"), ("hilgw.site-a.tracks_live", b"\x02")]
    assert live_subject("lab/west", "gw-1") == "lab.west.gw-1.tracks_live"


def test_duplicates_told_apart_over_a_failover_backlog() -> None:
    """The MQTT backstop may bring copies thousands of pictures behind the fast path."""
    h, _reports, stats = site_input()
    payloads = {
        seq: site_batch("site-a", seq, T0, POS, VEL).SerializeToString() for seq in (1, 10, 4000, 4200)
    }
    for seq in range(1, 4201):
        h("a.b", payloads.get(seq) or site_batch("site-a", seq, T0, POS, VEL).SerializeToString())
    h("hilgw/site-a/tracks", payloads[4000])  # 200 behind: a duplicate
    h("hilgw/site-a/tracks", payloads[10])  # beyond the memory (4096): older than the last used
    assert dict(stats.drops) == {"duplicate": 1, "out_of_order": 1}


def _theatre(fed: FederationConfig) -> tuple[FusionStage, SiteInput, list[int]]:
    reports: Topic[ReportsIn] = Topic("reports")
    stage = FusionStage(FusionConfig(publish_hz=2.0), "theatre", reports, Topic("tracks"))
    site = fed.sites[0]
    idx = stage.engine.add_sensor(SensorGeometry(f"site:{site.gateway_id}", np.zeros(3), np.eye(3)))
    clock = [T0]
    stats = DeviceStats(f"site:{site.gateway_id}", "federation", "mqtt")
    return stage, SiteInput(site, fed, reports, stats, idx, wall_ns=lambda: clock[0]), clock


def test_a_site_track_coasting_at_its_site_does_not_keep_a_theatre_track_confirmed() -> None:
    """A coasting site track is the site's prediction, no new measurement. Fused as
    one (the default took coasting tracks), it kept the theatre track confirmed as
    long as its site coasted it (10 s) and turned the sites' short-lived clutter
    tracks into confirmed theatre tracks: 3 false theatre tracks against 1 at one
    gateway fed every sensor on the demo (benchmarks/federation/RESULTS.md)."""
    fed = FederationConfig(sites=[SiteConfig(gateway_id="site-a")])
    stage, h, clock = _theatre(fed)
    coasting_from = 8
    statuses = []
    for step in range(34):  # 2 Hz site pictures
        t = clock[0] = T0 + step * 5 * 10**8
        b = site_batch("site-a", step + 1, t, POS + VEL * step * 0.5, VEL, track_id=9)
        if step >= coasting_from:
            b.tracks[0].status = track_pb2.TRACK_STATUS_COASTING
        h("t", b.SerializeToString())
        statuses.append({tr.track_id: tr.status for tr in stage.step_once(t).tracks})
    confirmed = [step for step, s in enumerate(statuses) if track_pb2.TRACK_STATUS_CONFIRMED in s.values()]
    assert confirmed
    assert confirmed[0] < coasting_from  # the site's confirmed track made one
    # Coasting at the site: no report reaches the theatre track, which coasts after
    # coast_after_s without one (2 pictures a second), and goes after drop_after_s.
    cfg = EngineConfig()
    assert max(confirmed) < coasting_from + 2 * cfg.coast_after_s
    gone = coasting_from + int(2 * cfg.drop_after_s) + 2
    assert all(not s or set(s.values()) == {track_pb2.TRACK_STATUS_DROPPED} for s in statuses[gone:])
    assert h.used == 34  # every picture used: the coasting track left out, not the picture

    # A site track only ever seen coasting never starts a theatre track.
    stage, h, clock = _theatre(fed)
    for step in range(10):
        t = clock[0] = T0 + step * 5 * 10**8
        b = site_batch("site-a", step + 1, t, POS + VEL * step * 0.5, VEL, track_id=4)
        b.tracks[0].status = track_pb2.TRACK_STATUS_COASTING
        h("t", b.SerializeToString())
        assert not stage.step_once(t).tracks
    # Configured to take them, they are fused as before.
    taking = FederationConfig(sites=[SiteConfig(gateway_id="site-a", statuses=["confirmed", "coasting"])])
    stage, h, clock = _theatre(taking)
    h("t", site_batch("site-a", 1, T0, POS, VEL, track_id=4).SerializeToString())
    coasting = site_batch("site-a", 2, T0 + 5 * 10**8, POS + VEL * 0.5, VEL, track_id=4)
    coasting.tracks[0].status = track_pb2.TRACK_STATUS_COASTING
    h("t", coasting.SerializeToString())
    assert len(stage.step_once(T0 + 5 * 10**8).tracks) == 1

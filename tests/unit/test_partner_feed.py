"""Partner feeds around the filter: markings from config through the fusion
stage, the delay line and the release audit, inbound assessments as a
low-trust source, the cue rule that keeps them from cueing, and config errors
(docs/partners.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from gateway.bus import Topic
from gateway.config import FusionConfig, parse_config
from gateway.cue.audit import AuditError, AuditLog, verify_file
from gateway.cue.rules import _track_reason
from gateway.devices.base import ReportsIn
from gateway.fusion.api import ReportArrays, SensorGeometry, TrackArrays
from gateway.fusion_stage import FusionStage
from gateway.health import DeviceStats
from gateway.outputs.mqtt import Outgoing
from gateway.partners.inbound import PartnerInbound
from gateway.partners.output import PartnerFeed
from gateway.partners.release import Picture, SourceMarkings
from gateway.sections.cue import CueRulesConfig
from gateway.sections.partners import PartnerConfig
from gateway.wiring.partners import source_markings
from hilgw.errors import ConfigError
from hilgw.v1 import health_pb2, partner_pb2, track_pb2
from tests.unit.test_partner_release import T0, one_track

OPEN = SourceMarkings(1, frozenset({"alpha"}))


class FakeSession:
    """Records what a feed hands to its MQTT session."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def enqueue(self, msg: Outgoing) -> None:
        self.sent.append(msg)


class FixedEngine:
    """A fusion engine that always returns the same picture."""

    def __init__(self, picture: TrackArrays) -> None:
        self.picture = picture
        self.sensors: list[SensorGeometry] = []

    def add_sensor(self, geometry: SensorGeometry) -> int:
        self.sensors.append(geometry)
        return len(self.sensors) - 1

    def step(self, reports: ReportArrays, t_ns: int) -> TrackArrays:
        return self.picture


def partner(tmp_path: Path, **kw: object) -> PartnerConfig:
    raw: dict[str, object] = {"id": "alpha", "release_as": "nation-x", "audit_log": str(tmp_path / "rel.log")}
    raw.update(kw)
    return PartnerConfig.model_validate(raw)


def test_markings_travel_from_config_through_the_fusion_stage() -> None:
    cfg = parse_config(
        {
            "devices": [
                {
                    "id": "radar-a",
                    "protocol": "serial_radar",
                    "transport": {"kind": "memory"},
                    "site": {"lat_deg": 55, "lon_deg": 12, "alt_m": 0},
                    "markings": {"classification": "RESTRICTED", "releasable_to": ["alpha"]},
                },
                {
                    "id": "frigate",
                    "protocol": "asterix",
                    "transport": {"kind": "udp", "bind_port": 0},
                    "ownship": {"lat_deg": 55, "lon_deg": 12},
                },
            ]
        }
    )
    # Two contributors: radar-a (marked) and a source of the frigate device (unmarked).
    stage = FusionStage(
        FusionConfig(), "gw", Topic("r"), Topic("t"), engine=FixedEngine(one_track(sensors=(0, 1)))
    )
    stage.engine.add_sensor(SensorGeometry("radar-a", np.zeros(3), np.eye(3)))
    stage.engine.add_sensor(SensorGeometry("frigate/cat048/1.2", np.zeros(3), np.eye(3)))
    stage.markings = source_markings(cfg.devices, [])
    pictures = stage.pictures.subscribe("test")
    batch = stage.step_once(T0)
    c0, c1 = batch.tracks[0].contributors
    assert (c0.sensor_id, c0.markings.classification, list(c0.markings.releasable_to)) == (
        "radar-a",
        2,
        ["alpha"],
    )
    assert not c1.HasField("markings")  # unmarked: never releasable
    pic = pictures.get_all()[0]
    assert pic.markings == (SourceMarkings(2, frozenset({"alpha"})), None)


def test_feed_delays_journals_then_sends(tmp_path: Path) -> None:
    cfg = partner(tmp_path, profile={"delay_s": 5.0})
    session = FakeSession()
    audit, _ = AuditLog.open(cfg.audit_log, fsync=False)
    feed = PartnerFeed(cfg, Topic("p"), session=session, audit=audit)  # type: ignore[arg-type]
    feed.take(Picture(1, T0, one_track(), (OPEN,)), now_mono=100.0)
    assert feed.release_due(104.9) == 0
    assert session.sent == []
    assert feed.release_due(105.0) == 1
    (msg,) = session.sent
    assert msg.topic == "partners/alpha/nation-x/picture"
    assert msg.qos == 1
    assert msg.kind == "partner"
    assert len(partner_pb2.PartnerPicture.FromString(msg.payload).track_ref) == 1
    audit.close()
    assert verify_file(cfg.audit_log).ok
    rec = next(r for r in AuditLog.open(cfg.audit_log)[1] if r["kind"] == "release")
    assert rec["data"]["sha256"] == hashlib.sha256(msg.payload).hexdigest()
    assert rec["data"]["partner"] == "alpha"
    assert rec["data"]["tracks"] == 1


class BrokenAudit(AuditLog):
    def flush(self) -> None:
        raise AuditError("disk full")


def test_nothing_leaves_unjournaled(tmp_path: Path) -> None:
    session = FakeSession()
    feed = PartnerFeed(partner(tmp_path), Topic("p"), session=session, audit=BrokenAudit(None))  # type: ignore[arg-type]
    feed.take(Picture(1, T0, one_track(), (OPEN,)), now_mono=0.0)
    assert feed.release_due(1.0) == 0
    assert session.sent == []
    assert feed.pictures["audit_failed"] == 1
    assert not feed.audit_ok


def assessment(n: int = 2, t_ns: int = T0, **over: object) -> bytes:
    msg = partner_pb2.PartnerAssessment(releasing_party="them", sequence=1, time_ns=t_ns)
    msg.track_ref.extend(range(1, n + 1))
    for col, val in (("x", 3.5e6), ("y", 7.8e5), ("z", 5.2e6), ("vx", 10.0), ("vy", 0.0), ("vz", 0.0)):
        getattr(msg, col).extend([val] * n)
    msg.sigma_position_m.extend([10.0] * n)  # claims 10 m: the floor (500 m) wins
    msg.sigma_velocity_mps.extend([80.0] * n)
    for k, v in over.items():
        field = getattr(msg, k)
        del field[:]
        field.extend(v)  # type: ignore[arg-type]
    return msg.SerializeToString()


def inbound(tmp_path: Path) -> tuple[PartnerInbound, Topic[ReportsIn], DeviceStats]:
    cfg = partner(tmp_path, inbound={})
    reports: Topic[ReportsIn] = Topic("reports")
    stats = DeviceStats("partner:alpha", "partner", "mqtt")
    return PartnerInbound(cfg, reports, stats, sensor_index=7, wall_ns=lambda: T0 + 10**9), reports, stats


def test_inbound_assessment_becomes_low_trust_reports(tmp_path: Path) -> None:
    handler, reports, stats = inbound(tmp_path)
    sub = reports.subscribe("test")
    handler("partners/alpha/inbound", assessment())
    (batch,) = sub.get_all()
    r = batch.reports
    assert batch.device_id == "partner:alpha"
    assert r.sensor.tolist() == [7, 7]
    assert np.allclose(np.sqrt(r.P[0].diagonal()), [500, 500, 500, 80, 80, 80])
    assert stats.reports_out == 2
    assert stats.state == health_pb2.DEVICE_STATE_UP


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xff\xff", "decode"),
        (assessment(vx=[1.0]), "shape"),
        (assessment(t_ns=T0 - 60 * 10**9), "stale"),
        (assessment(t_ns=T0 + 60 * 10**9), "future"),
        (assessment(x=[float("nan"), 1.0]), "not_finite"),
        (assessment(x=[1e12, 1.0]), "out_of_range"),
        (assessment(n=2001), "too_many_tracks"),
        (b"\x00" * (5 * 1024 * 1024), "too_large"),
    ],
)
def test_inbound_rejections_counted_never_raised(tmp_path: Path, payload: bytes, reason: str) -> None:
    handler, reports, stats = inbound(tmp_path)
    sub = reports.subscribe("test")
    handler("partners/alpha/inbound", payload)
    assert sub.get_all() == []
    assert dict(stats.drops) == {reason: 1}
    assert stats.frames_in == 1
    assert stats.state == health_pb2.DEVICE_STATE_DEGRADED  # all input rejected, not STARTING


def test_low_trust_only_track_never_a_candidate_unless_allowed() -> None:
    t = track_pb2.SystemTrack(track_id=1, status=track_pb2.TRACK_STATUS_CONFIRMED, quality=1.0)
    t.last_update_time_ns = T0
    c = t.contributors.add()
    c.sensor_id = "partner:alpha"
    c.markings.low_trust = True
    assert _track_reason(CueRulesConfig(), t, T0) == "low_trust_only"
    assert _track_reason(CueRulesConfig(allow_low_trust_only=True), t, T0) is None
    own = t.contributors.add()
    own.sensor_id = "radar-a"
    assert _track_reason(CueRulesConfig(), t, T0) is None  # an own sensor holds it too


@pytest.mark.parametrize(
    ("partners", "message"),
    [
        ([{"id": "a", "release_as": "x", "audit_log": "a"}] * 2, "partner id 'a' appears twice"),
        (
            [
                {"id": "a", "release_as": "x", "audit_log": "a", "broker": {"topic_prefix": "p/t"}},
                {"id": "b", "release_as": "x", "audit_log": "b", "broker": {"topic_prefix": "p/t"}},
            ],
            "share the topic tree",
        ),
        ([{"id": "a", "release_as": "x", "audit_log": "a", "profile": {"fields": ["velocity"]}}], "position"),
        (
            [
                {
                    "id": "a",
                    "release_as": "x",
                    "audit_log": "a",
                    "profile": {"polygon": {"vertices": [[0, -100], [1, 100], [2, 0]]}},
                }
            ],
            "180 degrees",
        ),
        ([{"id": "a", "release_as": "x", "audit_log": "a", "profile": {"delay_s": float("nan")}}], "finite"),
        ([{"id": "a", "release_as": "x", "audit_log": "a", "profile": {"secret_field": 1}}], "secret_field"),
    ],
)
def test_config_errors_one_line(partners: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"partners": partners})
    assert message in str(err.value)
    assert "\n" not in str(err.value)

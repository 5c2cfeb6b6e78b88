"""The cue core's per-picture work is done once per picture (issue 18), and the
decisions that depend on launcher events are still made on those events.

At ~2,700 tracks every launcher heartbeat, ack and timer tick re-ran the
rules over the whole picture (~10 ms each). Counted here: per-track rule
checks (``rules._track_reason``) and sensors-lost checks per event. The
safety half: with the picture unchanged, a launcher's link going down, its
heartbeat stopping, or a track's last sensor going down still cancels its
cue on that event, with the same reason as before.
"""

from __future__ import annotations

import pytest

from gateway.cue import evaluate, rules
from gateway.cue.inhibits import sensors_lost
from hilgw.v1 import cue_pb2, track_pb2
from tests.unit.cue_support import Harness, make_track

AUTO = cue_pb2.AUTHORITY_AUTO_CUE
#: Tracks in the picture: two inside L1's coverage, the rest far outside every launcher's.
N_FAR = 300


class Counts:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reasons = 0
        self.lost = 0
        track_reason = rules._track_reason

        def counted_reason(*a: object) -> str | None:
            self.reasons += 1
            return track_reason(*a)  # type: ignore[arg-type]

        def counted_lost(*a: object) -> bool:
            self.lost += 1
            return sensors_lost(*a)  # type: ignore[arg-type]

        monkeypatch.setattr(rules, "_track_reason", counted_reason)
        monkeypatch.setattr(evaluate, "sensors_lost", counted_lost)

    def take(self) -> tuple[int, int]:
        out, self.reasons, self.lost = (self.reasons, self.lost), 0, 0
        return out


def _picture(h: Harness) -> list[track_pb2.SystemTrack]:
    t = h.now.wall_ns
    near = [make_track(1, t_ns=t, sensors=("r1",)), make_track(2, lat=54.3, t_ns=t, sensors=("r2",))]
    far = [make_track(100 + k, lat=-30.0, lon=float(k % 180), t_ns=t) for k in range(N_FAR)]
    return near + far


def _auto(h: Harness) -> None:
    h.heartbeat()
    h.set_authority("auto_cue")
    h.tracks(*_picture(h))
    assert {c.system_track_id for c in h.launchers["L1"].accepted} == {1, 2}


def test_launcher_events_do_not_re_check_the_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(monkeypatch)
    h = Harness()
    h.heartbeat()
    h.set_authority("auto_cue")
    counts.take()
    h.tracks(*_picture(h))
    assert h.core.authority.value == AUTO
    assert {c.system_track_id for c in h.launchers["L1"].accepted} == {1, 2}  # cued (and acked) from it
    n = N_FAR + 2
    assert counts.take() == (n, n)  # the picture itself: every track once
    evaluations = h.core.picture_evaluations
    for _ in range(10):
        h.advance(0.05)  # a timer tick
        h.heartbeat()  # heartbeats of both launchers
        assert counts.take() == (0, 0), "a heartbeat or tick re-checked the picture's tracks"
    assert h.core.picture_evaluations == evaluations
    h.tracks(*_picture(h))  # a new picture: checked again, once
    assert counts.take() == (n, n)
    assert h.core.picture_evaluations == evaluations + 1
    assert not h.launchers["L1"].cancels


def test_link_down_cancels_on_the_event_with_the_picture_unchanged() -> None:
    h = Harness()
    _auto(h)
    h.apply(h.core.on_link("L1", False, h.now))
    assert sorted(c.system_track_id for c in h.launchers["L1"].cancels) == [1, 2]
    assert {c.reason for c in h.launchers["L1"].cancels} == {"inhibit:link_down"}
    h.apply(h.core.on_link("L1", True, h.now))  # back, but no heartbeat yet: still nothing cued
    h.advance(0.1)
    assert len(h.launchers["L1"].accepted) == 2
    h.heartbeat("L1")  # heard again: the same picture's candidates are cued again on the heartbeat
    assert len(h.launchers["L1"].accepted) == 4


def test_heartbeat_loss_cancels_with_the_picture_unchanged() -> None:
    h = Harness()
    _auto(h)
    while not h.launchers["L1"].cancels:
        h.advance(0.1)
        h.heartbeat("L2")  # the other launcher's heartbeats keep coming
        assert h.now.mono_ns - h.core.picture_mono < 1.5e9, "never cancelled"  # type: ignore[operator]
    assert {c.reason for c in h.launchers["L1"].cancels} == {"inhibit:heartbeat_lost"}


def test_last_sensor_down_cancels_that_track_only() -> None:
    h = Harness()
    _auto(h)
    h.apply(h.core.on_sensor_health("r1", False, h.now))
    assert [(c.system_track_id, c.reason) for c in h.launchers["L1"].cancels] == [(1, "inhibit:sensors_lost")]
    h.apply(h.core.on_sensor_health("r1", True, h.now))  # back: the memo of the picture follows
    assert 1 not in h.core.track_inhibit

"""Which clock a launcher heartbeat counts at (docs/cue-path.md §5).

A heartbeat's timeout runs from when the link heard it, not from when the
loaded cue path got round to it: time it waited in the inbox must never keep
a launcher alive past its ``heartbeat_timeout_s``. (The answer's own age
check, ICD §7.5, is against the frame's receive stamp:
tests/e2e/test_launcher_e2e.py::test_answer_age_is_judged_at_frame_receipt_not_when_the_loop_gets_to_it.)
"""

from __future__ import annotations

import time

from drivers.launcher import LauncherState, LauncherStatus
from gateway.cue.driver_link import DriverLink
from gateway.cue.link import Heartbeat, LauncherEvent
from gateway.devices.launcher import LauncherIn
from tests.unit.cue_support import Harness

LATE_S = 0.6  # the heartbeat waited this long between the link and the core


def _late_heartbeat(h: Harness) -> None:
    heard = h.now.mono_ns - int(LATE_S * 1e9)
    h.apply(h.core.on_heartbeat("L1", h.now, rx_mono_ns=heard))


def test_a_heartbeat_counts_from_when_it_was_heard_not_when_it_was_processed() -> None:
    h = Harness()
    h.heartbeat()
    h.advance(0.9)
    _late_heartbeat(h)  # heard at +0.3 s, processed at +0.9 s
    h.advance(0.5)  # +1.4 s: 1.1 s after it was heard (timeout 1.0 s)
    lau = h.core.launchers["L1"]
    assert "heartbeat_lost" in lau.inhibits
    inhibit = [r["data"] for r in h.audit.records if r["kind"] == "inhibit" and r["data"].get("launcher")]
    assert "heartbeat_lost" in inhibit[-1]["on"]


def test_a_stamp_from_the_future_counts_as_processing_time() -> None:
    """A link stamp later than the core's clock never extends the life either."""
    h = Harness()
    h.heartbeat()
    h.apply(h.core.on_heartbeat("L1", h.now, rx_mono_ns=h.now.mono_ns + 10**10))
    h.advance(1.1)
    assert "heartbeat_lost" in h.core.launchers["L1"].inhibits


def test_an_older_heartbeat_does_not_move_the_mark_back() -> None:
    h = Harness()
    h.heartbeat()
    h.advance(0.8)
    h.heartbeat()  # +0.8 s
    _late_heartbeat(h)  # heard at +0.2 s, processed after the one heard at +0.8 s
    h.advance(0.5)  # +1.3 s: 0.5 s after the newest
    assert not h.core.launchers["L1"].inhibits


class _Driver:
    """Enough of a LauncherDriver for DriverLink to attach its listeners."""

    config = None

    def __init__(self) -> None:
        self.listeners: list[object] = []

    def add_listener(self, cb: object) -> None:
        self.listeners.append(cb)

    def add_rejection_listener(self, cb: object) -> None:
        pass


def test_the_driver_link_stamps_heartbeats_when_the_driver_hands_them_over() -> None:
    got: list[LauncherEvent] = []
    driver = _Driver()
    DriverLink("L1", driver, got.append)  # type: ignore[arg-type]
    status = LauncherStatus(launcher_id=1, state=LauncherState.READY, sequence=1, launcher_time_ns=1)
    t0 = time.monotonic_ns()
    driver.listeners[0](LauncherIn("L1", 0, status))  # type: ignore[operator]
    (hb,) = got
    assert isinstance(hb, Heartbeat)
    assert t0 <= hb.rx_mono_ns <= time.monotonic_ns()

"""Per-device counters and state, rendered as ``hilgw.v1.DeviceHealth``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hilgw.v1 import health_pb2

State = health_pb2.DeviceState

#: Detail of a device whose frames arrive but are all rejected by its codec.
ALL_REJECTED = "all input rejected (decode)"
#: The span over which "all input rejected" is judged: with the default 1 s
#: health interval a feed turned all-junk is DEGRADED within 2 windows + 1 s.
INPUT_WINDOW_S = 1.5


@dataclass
class SourceStats:
    """Counters and state of one source (a radar by SAC/SIC) of a multi-source device."""

    name: str
    state: int = health_pb2.DEVICE_STATE_STARTING
    detail: str = "nothing received yet"
    records_in: int = 0
    reports_out: int = 0
    service_messages: int = 0
    #: Records older than this source's newest (its own sequence; others' times do not count).
    out_of_sequence: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    #: Reports published with a field taken as unknown, by reason (DeviceStats.degraded).
    degraded: Counter[str] = field(default_factory=Counter)
    #: Antenna rotation period from north markers / sector crossings (CAT034), s; 0 unknown.
    rotation_s: float = 0.0

    def set_state(self, state: int, detail: str) -> None:
        self.state = state
        self.detail = detail


@dataclass
class DeviceStats:
    """Mutable counters of one device. Only its driver task writes them."""

    device_id: str
    protocol: str
    transport: str
    gateway_id: str = ""
    state: int = health_pb2.DEVICE_STATE_STARTING
    detail: str = ""
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    reports_out: int = 0
    restarts: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    #: Reports published, not dropped, with a field the gateway had to take as
    #: unknown, by reason (``height_unknown``: an ASTERIX height item absent,
    #: out of its range or saturated).
    degraded: Counter[str] = field(default_factory=Counter)
    last_frame_time_ns: int = 0
    last_frame_mono: float = 0.0
    device_time_ns: int = 0
    last_error: str = ""
    #: Frames (or records) a codec rejected: part of ``drops`` by reason, and
    #: counted here so that "every input rejected" can be told from "no input".
    rejected_in: int = 0
    #: Multi-source devices: per source (SAC/SIC) counters and state, by name.
    sources: dict[str, SourceStats] = field(default_factory=dict)
    #: Records of sources the config does not name, by source id ("sac.sic").
    unknown_sources: Counter[str] = field(default_factory=Counter)
    #: A driver's own periodic health check (per-source timeouts), called by the
    #: gateway's health loop with the monotonic time.
    check: Callable[[float], None] | None = None
    #: (frames_in, rejected_in, monotonic s) at the start of the input window.
    _window: tuple[int, int, float] = (0, 0, 0.0)
    _verdict: str | None = None

    def input_verdict(self, now_mono: float) -> str | None:
        """What came in over the last whole window of :data:`INPUT_WINDOW_S`:
        ``"rejected"`` (inputs, every one rejected), ``"accepted"`` (some
        decoded) or None (nothing). A decoded input counts at once; "rejected"
        only for a whole window, so a short stretch of junk between good
        frames never reads as a dirty feed."""
        f0, r0, t0 = self._window
        df, dr = self.frames_in - f0, self.rejected_in - r0
        full = now_mono - t0 >= INPUT_WINDOW_S
        if df > dr:
            verdict: str | None = "accepted"
        elif full:
            verdict = "rejected" if dr > 0 else None
        else:  # a window still filling: the last whole one's word stands, unless it was "accepted"
            return self._verdict if self._verdict == "rejected" else None
        if full:
            self._window = (self.frames_in, self.rejected_in, now_mono)
            self._verdict = verdict
        return verdict

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def degrade(self, reason: str, n: int = 1) -> None:
        """Count ``n`` reports published with a field taken as unknown (``reason``)."""
        self.degraded[reason] += n

    def reject(self, reason: str, n: int = 1) -> None:
        """Count ``n`` inputs a codec rejected (a ``Rejected`` event) under ``reason``."""
        self.drops[reason] += n
        self.rejected_in += n

    def set_state(self, state: int, detail: str = "") -> None:
        self.state = state
        self.detail = detail

    def to_proto(self, now_ns: int | None = None) -> health_pb2.DeviceHealth:
        msg = health_pb2.DeviceHealth(
            device_id=self.device_id,
            protocol=self.protocol,
            transport=self.transport,
            state=self.state,  # type: ignore[arg-type]  # int is the enum's wire value
            detail=self.detail,
            time_ns=time.time_ns() if now_ns is None else now_ns,
            last_frame_time_ns=self.last_frame_time_ns,
            device_time_ns=self.device_time_ns,
            gateway_id=self.gateway_id,
        )
        c = msg.counters
        c.frames_in = self.frames_in
        c.bytes_in = self.bytes_in
        c.frames_out = self.frames_out
        c.bytes_out = self.bytes_out
        c.reports_out = self.reports_out
        c.restarts = self.restarts
        for reason, n in self.drops.items():
            c.drops[reason] = n
        return msg

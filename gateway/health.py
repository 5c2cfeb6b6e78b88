"""Per-device counters and state, rendered as ``hilgw.v1.DeviceHealth``."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from hilgw.v1 import health_pb2

State = health_pb2.DeviceState


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
    last_frame_time_ns: int = 0
    last_frame_mono: float = 0.0
    device_time_ns: int = 0
    last_error: str = ""

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

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

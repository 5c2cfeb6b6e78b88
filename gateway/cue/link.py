"""The seam between the cue path and a launcher interface driver.

A :class:`LauncherLink` sends; what a launcher says comes back as
:data:`LauncherEvent` values the driver (or its adapter) hands to
:meth:`gateway.cue.path.CuePath.launcher_event`. The link never signs or
decides anything: cues and cancels arrive signed by the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hilgw.v1 import cue_pb2

__all__ = ["Ack", "Heartbeat", "LauncherEvent", "LauncherLink", "LinkState", "ReplyRejected"]


class LauncherLink(Protocol):
    """One launcher interface, as the cue path sees it."""

    @property
    def launcher_id(self) -> str:
        """The launcher's id in the cue config (its device id)."""

    async def send_cue(self, cue: cue_pb2.EngagementCue) -> None:
        """Put the cue on the wire (raise :class:`hilgw.errors.TransportError` if the link is down)."""

    async def send_cancel(self, cancel: cue_pb2.CueCancel) -> None:
        """Put the cancel on the wire."""


@dataclass(frozen=True, slots=True)
class Ack:
    ack: cue_pb2.CueAck


@dataclass(frozen=True, slots=True)
class Heartbeat:
    launcher_id: str
    ok: bool = True  # False: the launcher reports a fault
    detail: str = ""
    device_time_ns: int = 0


@dataclass(frozen=True, slots=True)
class LinkState:
    launcher_id: str
    up: bool


@dataclass(frozen=True, slots=True)
class ReplyRejected:
    """An ack or heartbeat that failed verification (ICD v2 §7.5): audited, never
    counted as a heartbeat (so a launcher whose heartbeats stop verifying is lost)."""

    launcher_id: str
    message: str  # "LAUNCHER_ACK" or "LAUNCHER_STATUS"
    reason: str  # auth_bad_mac, auth_replayed, auth_stale, ...
    detail: str = ""


LauncherEvent = Ack | Heartbeat | LinkState | ReplyRejected

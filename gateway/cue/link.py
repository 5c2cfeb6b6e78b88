"""The seam between the cue path and a launcher interface driver.

A :class:`LauncherLink` seals and sends; what a launcher says comes back as
:data:`LauncherEvent` values the driver (or its adapter) hands to
:meth:`gateway.cue.path.CuePath.launcher_event`. The link decides nothing.
The core calls :meth:`LauncherLink.seal_cue` / ``seal_cancel`` (pure: the
codec's signer over the ICD's wire bytes) while it decides, journals the tag,
and after the journal flush the shell hands the :class:`~gateway.cue.seal.Sealed`
event to :meth:`LauncherLink.send`, which puts exactly it on the wire: one MAC
per cue (docs/cue-path.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.cue.seal import Sealed
from hilgw.v1 import cue_pb2

__all__ = ["Ack", "Heartbeat", "LauncherEvent", "LauncherLink", "LinkState", "ReplyRejected"]


class LauncherLink(Protocol):
    """One launcher interface, as the cue path sees it."""

    @property
    def launcher_id(self) -> str:
        """The launcher's id in the cue config (its device id)."""

    def seal_cue(self, cue: cue_pb2.EngagementCue) -> Sealed:
        """``cue`` as the wire will carry it, signed (pure; see :class:`~gateway.cue.seal.Sealer`)."""

    def seal_cancel(self, cancel: cue_pb2.CueCancel) -> Sealed:
        """``cancel`` as the wire will carry it, signed."""

    async def send(self, sealed: Sealed) -> None:
        """Put a sealed cue or cancel on the wire unchanged (raise
        :class:`hilgw.errors.TransportError` if the link is down)."""


@dataclass(frozen=True, slots=True)
class Ack:
    ack: cue_pb2.CueAck


@dataclass(frozen=True, slots=True)
class Heartbeat:
    launcher_id: str
    ok: bool = True  # False: the launcher reports a fault
    detail: str = ""
    device_time_ns: int = 0
    #: Monotonic ns when the link heard it (verified); 0: unknown (the cue path's
    #: processing time counts). The heartbeat timeout runs from the earlier of the two,
    #: so time it waits in the cue path's inbox never keeps a launcher alive.
    rx_mono_ns: int = 0


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

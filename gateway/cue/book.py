"""Cue bookkeeping types: one cue's life, the effects the core asks the shell for.

A cue (one system track to one launcher) moves through::

    PENDING_APPROVAL ──approve──▶ SENT ──ack──▶ ACKED ──validity over──▶ EXPIRED
          │                        │  ╰─nack──▶ NACKED
          │                        ╰─no ack after max_retries resends──▶ FAILED
          ╰─reject / timeout / HOLD / inhibit / track gone──▶ REJECTED / EXPIRED / CANCELLED

Any live cue (SENT/ACKED) that stops being allowed (track dropped or out of
the volume, an inhibit, authority lowered) is CANCELLED and a cancel goes to
the launcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message

from gateway.cue.outputs import state_digest
from gateway.cue.seal import Sealed
from hilgw.v1 import cue_pb2

__all__ = ["LIVE", "Cue", "Effect", "Now", "Publish", "SendCancel", "SendCue", "status_name"]

S = cue_pb2
LIVE = (S.CUE_STATUS_SENT, S.CUE_STATUS_ACKED)
OPEN = (S.CUE_STATUS_PENDING_APPROVAL, *LIVE)


def status_name(value: int) -> str:
    return S.CueStatus.Name(value).removeprefix("CUE_STATUS_")  # type: ignore[arg-type]  # an enum wire value


@dataclass(frozen=True, slots=True)
class Now:
    """The two clocks, passed in: UTC for validity windows and command freshness,
    monotonic for timeouts (a wall-clock jump must not fire or hold a timeout)."""

    wall_ns: int
    mono_ns: int

    def plus(self, seconds: float) -> Now:
        d = int(seconds * 1e9)
        return Now(self.wall_ns + d, self.mono_ns + d)


@dataclass
class Cue:
    cue_id: int
    launcher_id: str
    track_id: int
    status: int
    created: Now
    updated_ns: int
    detail: str = ""
    approved_by: str = ""
    auto: bool = False  # sent under AUTO_CUE (not approved)
    attempts: int = 0  # sends so far (first + resends)
    sequences: list[int] = field(default_factory=list)
    ack_deadline_mono: int = 0
    approval_deadline_mono: int = 0
    expires_mono: int = 0
    message: cue_pb2.EngagementCue | None = None

    @property
    def pair(self) -> tuple[int, str]:
        return (self.track_id, self.launcher_id)

    def to_proto(self) -> cue_pb2.CueRecord:
        return cue_pb2.CueRecord(
            cue_id=self.cue_id,
            launcher_id=self.launcher_id,
            system_track_id=self.track_id,
            status=self.status,  # type: ignore[arg-type]  # an enum wire value
            detail=self.detail,
            created_time_ns=self.created.wall_ns,
            updated_time_ns=self.updated_ns,
            attempts=self.attempts,
            sequence=self.sequences[-1] if self.sequences else 0,
            valid_until_ns=self.message.valid_until_ns if self.message is not None else 0,
            state_digest=state_digest(self.message) if self.message is not None else b"",
        )


@dataclass(frozen=True, slots=True)
class SendCue:
    """Put this sealed cue on the launcher link as it is (after the audit flush)."""

    launcher_id: str
    sealed: Sealed

    @property
    def cue(self) -> cue_pb2.EngagementCue:
        """The cue as journaled and published (its ``mac`` is the wire tag)."""
        msg = self.sealed.message
        assert isinstance(msg, cue_pb2.EngagementCue)
        return msg


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Put this sealed cancel on the launcher link as it is (after the audit flush)."""

    launcher_id: str
    sealed: Sealed

    @property
    def cancel(self) -> cue_pb2.CueCancel:
        msg = self.sealed.message
        assert isinstance(msg, cue_pb2.CueCancel)
        return msg


@dataclass(frozen=True, slots=True)
class Publish:
    """A message for operators/C2 (MQTT). ``kind``: authority, cues, cue, ack, result."""

    kind: str
    message: Message
    retain: bool = False


Effect = SendCue | SendCancel | Publish

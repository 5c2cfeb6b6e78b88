"""An in-memory launcher for tests and benches: checks cues like the emulator.

:class:`FakeLauncher` is the *device* side: it verifies MAC, key id,
sequence (strictly increasing per launcher, cues and cancels alike) and the
validity window against its own clock, and answers ack or nack. It has the
misbehaviour switches the tests need (drop acks, go silent). :class:`MemoryLink`
is a :class:`~gateway.cue.link.LauncherLink` that delivers to one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.cue.link import Ack, LauncherEvent
from gateway.cue.signing import verify
from hilgw.errors import TransportError
from hilgw.v1 import cue_pb2

__all__ = ["NACK_CODES", "FakeLauncher", "MemoryLink"]

#: Reason codes of this fake (the real ones are in docs/icd/launcher.md).
NACK_CODES = {"unsigned": 1, "unknown_key": 2, "bad_mac": 3, "replayed": 4, "stale": 5, "not_yet_valid": 6}


@dataclass
class FakeLauncher:
    launcher_id: str
    keys: dict[str, bytes]  # key_id -> secret this launcher accepts
    clock_ns: Callable[[], int]
    tolerance_ns: int = 0
    drop_acks: bool = False
    last_sequence: int = 0
    accepted: list[cue_pb2.EngagementCue] = field(default_factory=list)
    cancels: list[cue_pb2.CueCancel] = field(default_factory=list)
    rejected: list[tuple[str, cue_pb2.EngagementCue | cue_pb2.CueCancel]] = field(default_factory=list)

    def _check(self, msg: cue_pb2.EngagementCue | cue_pb2.CueCancel) -> str | None:
        if not msg.key_id or not msg.mac:
            return "unsigned"
        secret = self.keys.get(msg.key_id)
        if secret is None:
            return "unknown_key"
        if not verify(msg, secret):
            return "bad_mac"
        if msg.sequence <= self.last_sequence:
            return "replayed"
        return None

    def receive_cue(self, cue: cue_pb2.EngagementCue) -> cue_pb2.CueAck | None:
        """Judge one cue; the ack or nack to send back (None when acks are dropped)."""
        why = self._check(cue)
        if why is None:
            now = self.clock_ns()
            if now > cue.valid_until_ns + self.tolerance_ns:
                why = "stale"
            elif now < cue.valid_from_ns - self.tolerance_ns:
                why = "not_yet_valid"
        if why is None and cue.sequence > self.last_sequence:
            self.last_sequence = cue.sequence
        elif why not in ("unsigned", "unknown_key", "bad_mac", "replayed"):
            self.last_sequence = max(self.last_sequence, cue.sequence)  # authentic: its sequence is used up
        if why is None:
            self.accepted.append(cue)
        else:
            self.rejected.append((why, cue))
        if self.drop_acks:
            return None
        return cue_pb2.CueAck(
            cue_id=cue.cue_id,
            launcher_id=self.launcher_id,
            result=cue_pb2.ACK_RESULT_ACK if why is None else cue_pb2.ACK_RESULT_NACK,
            reason_code=0 if why is None else NACK_CODES[why],
            reason=why or "",
            time_ns=self.clock_ns(),
            sequence=cue.sequence,
        )

    def receive_cancel(self, cancel: cue_pb2.CueCancel) -> None:
        why = self._check(cancel)
        if why is None:
            self.last_sequence = cancel.sequence
            self.cancels.append(cancel)
        else:
            self.rejected.append((why, cancel))


@dataclass
class MemoryLink:
    """A LauncherLink to a :class:`FakeLauncher`; acks go to ``sink``."""

    launcher: FakeLauncher
    sink: Callable[[LauncherEvent], None]
    up: bool = True

    @property
    def launcher_id(self) -> str:
        return self.launcher.launcher_id

    async def send_cue(self, cue: cue_pb2.EngagementCue) -> None:
        if not self.up:
            raise TransportError(f"{self.launcher_id}: link down")
        ack = self.launcher.receive_cue(cue)
        if ack is not None:
            self.sink(Ack(ack))

    async def send_cancel(self, cancel: cue_pb2.CueCancel) -> None:
        if not self.up:
            raise TransportError(f"{self.launcher_id}: link down")
        self.launcher.receive_cancel(cancel)

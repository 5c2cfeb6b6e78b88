"""An in-memory launcher for tests and benches: checks cues like a real launcher.

:class:`FakeLauncher` is the *device* side. It takes what the link puts on
the wire: the sealed cue or cancel is framed by the gateway role of the CAN
FD codec, optionally tampered with (:attr:`FakeLauncher.tamper`, a man in the
middle), decoded by the device role, and judged by the real launcher's
:class:`~drivers.launcher.CueValidator` (addressed, signed, known key, the
tag over the bytes as received, sequence above the highest accepted; ICD
§6, §7). Then the validity window against its own clock (with a tolerance),
and it answers ack or nack. It has the misbehaviour switches the tests need
(drop acks, tamper). :class:`MemoryLink` is a
:class:`~gateway.cue.link.LauncherLink` that seals with the launcher's keys
(:class:`~gateway.cue.seal.KeySealer`) and delivers to one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.base import Rejected, Role
from drivers.launcher import Cue as WireCue
from drivers.launcher import CueCancel as WireCancel
from drivers.launcher import CueValidator, LauncherCanCodec, NackReason
from gateway.cue.link import Ack, LauncherEvent
from gateway.cue.seal import KeySealer, Sealed
from hilgw.can import CanFrame
from hilgw.errors import TransportError
from hilgw.v1 import cue_pb2

__all__ = ["NACK_CODES", "FakeLauncher", "MemoryLink"]

#: Reason codes of this fake (the real ones are in docs/icd/launcher.md).
NACK_CODES = {
    "unsigned": 1,
    "unknown_key": 2,
    "bad_mac": 3,
    "replayed": 4,
    "stale": 5,
    "not_yet_valid": 6,
    "wrong_launcher": 7,
    "malformed": 8,
}
_WHY = {
    NackReason.UNSIGNED: "unsigned",
    NackReason.UNKNOWN_KEY: "unknown_key",
    NackReason.BAD_MAC: "bad_mac",
    NackReason.REPLAY: "replayed",
    NackReason.WRONG_LAUNCHER: "wrong_launcher",
}
_FAR_FUTURE_NS = 1 << 62  # flushes a cue body whose MAC frame never came (it is then unsigned)

Tamper = Callable[[list[CanFrame]], list[CanFrame]]


@dataclass
class FakeLauncher:
    """``keys``: wire key id -> secret this launcher accepts (ICD §7.2);
    ``wire_id``: its launcher id on the wire."""

    launcher_id: str
    keys: dict[int, bytes]
    clock_ns: Callable[[], int]
    wire_id: int = 1
    tolerance_ns: int = 0
    drop_acks: bool = False
    last_sequence: int = 0
    #: Applied to the frames between the link and this launcher (None: untouched).
    tamper: Tamper | None = None
    accepted: list[cue_pb2.EngagementCue] = field(default_factory=list)
    cancels: list[cue_pb2.CueCancel] = field(default_factory=list)
    rejected: list[tuple[str, cue_pb2.EngagementCue | cue_pb2.CueCancel]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._tx = LauncherCanCodec(Role.GATEWAY, launcher_id=self.wire_id)  # frames sealed events only
        self._rx = LauncherCanCodec(Role.DEVICE, launcher_id=self.wire_id)
        self._validator = CueValidator(self.wire_id, self.keys)

    def _receive(self, sealed: Sealed) -> tuple[WireCue | WireCancel | None, str | None]:
        """The event as this launcher decodes it from the wire, and why it is refused (None: authentic)."""
        frames = self._tx.send(sealed.wire)
        if self.tamper is not None:
            frames = self.tamper(frames)
        now = self.clock_ns()
        events = self._rx.receive_frames(frames, now) or self._rx.expire(_FAR_FUTURE_NS)
        got = [e for e in events if isinstance(e, WireCue | WireCancel)]
        if not got or any(isinstance(e, Rejected) for e in events):
            return None, "malformed"
        # last_sequence is this fake's public state (tests and benches set it);
        # the validator keeps the same mark: keep the two in step.
        self._validator.highest_sequence = self.last_sequence
        verdict = self._validator.authenticate(got[0])
        self.last_sequence = self._validator.highest_sequence
        return got[0], _WHY.get(verdict, verdict.name.lower()) if verdict is not NackReason.NONE else None

    def receive_cue(self, sealed: Sealed) -> cue_pb2.CueAck | None:
        """Judge one cue as it arrives on the wire; the ack or nack to send back
        (None when acks are dropped)."""
        cue = sealed.message
        assert isinstance(cue, cue_pb2.EngagementCue)
        wire, why = self._receive(sealed)
        if why is None and isinstance(wire, WireCue):
            now = self.clock_ns()
            if now > wire.valid_until_ns + self.tolerance_ns:
                why = "stale"
            elif now < wire.valid_from_ns - self.tolerance_ns:
                why = "not_yet_valid"
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
            reason_code=0 if why is None else NACK_CODES.get(why, 255),
            reason=why or "",
            time_ns=self.clock_ns(),
            sequence=cue.sequence,
        )

    def receive_cancel(self, sealed: Sealed) -> None:
        cancel = sealed.message
        assert isinstance(cancel, cue_pb2.CueCancel)
        _, why = self._receive(sealed)
        if why is None:
            self.cancels.append(cancel)
        else:
            self.rejected.append((why, cancel))


@dataclass
class MemoryLink:
    """A LauncherLink to a :class:`FakeLauncher`; acks go to ``sink``. Seals with
    ``sealer`` (default: the launcher's own wire id and keys, its highest key id)."""

    launcher: FakeLauncher
    sink: Callable[[LauncherEvent], None]
    up: bool = True
    sealer: KeySealer | None = None

    def __post_init__(self) -> None:
        if self.sealer is None:
            self.sealer = KeySealer(self.launcher.wire_id, self.launcher.keys)

    @property
    def launcher_id(self) -> str:
        return self.launcher.launcher_id

    def seal_cue(self, cue: cue_pb2.EngagementCue) -> Sealed:
        assert self.sealer is not None
        return self.sealer.seal_cue(cue)

    def seal_cancel(self, cancel: cue_pb2.CueCancel) -> Sealed:
        assert self.sealer is not None
        return self.sealer.seal_cancel(cancel)

    async def send(self, sealed: Sealed) -> None:
        if not self.up:
            raise TransportError(f"{self.launcher_id}: link down")
        if isinstance(sealed.message, cue_pb2.EngagementCue):
            ack = self.launcher.receive_cue(sealed)
            if ack is not None:
                self.sink(Ack(ack))
        else:
            self.launcher.receive_cancel(sealed)

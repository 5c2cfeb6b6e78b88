"""One MAC per cue: the launcher link's ``seal`` step (docs/cue-path.md §3).

A cue or cancel is signed once, by the launcher codec's signer
(:func:`drivers.launcher.codec_can.seal`), over the ICD's canonical wire bytes
(docs/icd/launcher.md §7.1). The core asks the link to seal *before* it
journals the decision, so the audit record names the very tag the launcher
verifies, and the ``EngagementCue`` / ``CueCancel`` it publishes carries that
tag in ``key_id`` / ``mac`` (no second, message-level MAC). The link then puts
exactly the sealed event on the wire, unchanged.

Sealing is pure (no I/O, no clock): it encodes the 64-byte body and computes
one HMAC-SHA256, so the core can call it inside a decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from drivers.base import Role
from drivers.launcher import Cue as WireCue
from drivers.launcher import CueCancel as WireCancel
from drivers.launcher.codec_can import seal as codec_seal
from hilgw.v1 import cue_pb2

__all__ = [
    "CANCEL_REASONS",
    "KeySealer",
    "Sealed",
    "Sealer",
    "cancel_code",
    "pair_sealed",
    "wire_cancel",
    "wire_cue",
]

#: CueCancel.reason codes on the wire (ICD §5.3 leaves them to the sender).
CANCEL_REASONS = {
    "track_dropped": 1,
    "outside_volume": 2,
    "picture_stale": 3,
    "authority_hold": 4,
    "authority_lowered": 5,
    "not_confirmed": 6,
    "low_quality": 7,
    "track_stale": 8,
    "category": 9,
}
_INHIBIT = 20  # any "inhibit:..." reason
_OTHER = 255


def cancel_code(reason: str) -> int:
    """The wire reason code of a cancel reason (ICD §5.3)."""
    if reason.startswith("inhibit:"):
        return _INHIBIT
    return CANCEL_REASONS.get(reason, _OTHER)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A cue or cancel as it goes on the wire: ``wire`` carries the one tag.

    ``message`` is the cue path's record of it (``key_id`` and ``mac`` are the
    wire's); ``wire`` is what the link sends, byte for byte.
    """

    message: cue_pb2.EngagementCue | cue_pb2.CueCancel
    wire: WireCue | WireCancel

    @property
    def tag(self) -> bytes:
        """The 32-byte HMAC-SHA256 tag the launcher verifies (ICD §7.1)."""
        return self.wire.mac

    @property
    def key_id(self) -> int:
        """The wire KeyId the tag was made under (ICD §7.2)."""
        return self.wire.key_id


class Sealer(Protocol):
    """What the core needs of a launcher link to sign: pure, synchronous.
    Raises :class:`hilgw.errors.LocalProtocolError` for what the link cannot
    carry (no key, a value outside the ICD's range)."""

    def seal_cue(self, cue: cue_pb2.EngagementCue) -> Sealed:
        """``cue`` as the wire will carry it, signed (``cue`` itself is not changed)."""

    def seal_cancel(self, cancel: cue_pb2.CueCancel) -> Sealed:
        """``cancel`` as the wire will carry it, signed."""


def wire_cue(cue: cue_pb2.EngagementCue, launcher_id: int, key_id: int = 0) -> WireCue:
    """The ICD's cue (docs/icd/launcher.md §5.1) for ``cue``, with its sequence, unsigned."""
    s = cue.state
    cov = np.asarray(s.covariance, dtype=float) if len(s.covariance) == 36 else np.zeros(36)
    return WireCue.from_state(
        state=[s.x, s.y, s.z, s.vx, s.vy, s.vz],
        covariance=cov.reshape(6, 6),
        launcher_id=launcher_id,
        key_id=key_id,
        cue_id=int(cue.cue_id),
        system_track_id=int(cue.system_track_id),
        time_of_validity_ns=int(cue.time_of_validity_ns),
        valid_from_ns=int(cue.valid_from_ns),
        valid_until_ns=int(cue.valid_until_ns),
        sequence=int(cue.sequence),
    )


def wire_cancel(cancel: cue_pb2.CueCancel, launcher_id: int, key_id: int = 0) -> WireCancel:
    """The ICD's cancel (§5.3) for ``cancel``, with its sequence, unsigned."""
    return WireCancel(
        launcher_id=launcher_id,
        key_id=key_id,
        cue_id=int(cancel.cue_id),
        issue_time_ns=int(cancel.time_ns),
        reason=cancel_code(cancel.reason),
        sequence=int(cancel.sequence),
    )


def pair_sealed(message: cue_pb2.EngagementCue | cue_pb2.CueCancel, wire: WireCue | WireCancel) -> Sealed:
    """Pair a signed wire event with a copy of ``message`` that carries its tag."""
    out = type(message)()
    out.CopyFrom(message)  # type: ignore[arg-type]  # same type by construction
    out.key_id, out.mac = str(wire.key_id), wire.mac
    return Sealed(out, wire)


@dataclass(frozen=True)
class KeySealer:
    """A :class:`Sealer` from a launcher id and cue keys (ICD §7.2): what a
    launcher link without a device driver (tests, benches) signs with.
    ``key_id``: default the highest id in ``keys``."""

    launcher_id: int
    keys: Mapping[int, bytes]
    key_id: int = 0

    def __post_init__(self) -> None:
        if not self.key_id and self.keys:
            object.__setattr__(self, "key_id", max(self.keys))

    def _seal(self, event: WireCue | WireCancel) -> WireCue | WireCancel:
        out = codec_seal(Role.GATEWAY, dataclasses.replace(event, key_id=self.key_id), self.keys, None, 2)
        assert isinstance(out, WireCue | WireCancel)
        return out

    def seal_cue(self, cue: cue_pb2.EngagementCue) -> Sealed:
        return pair_sealed(cue, self._seal(wire_cue(cue, self.launcher_id)))

    def seal_cancel(self, cancel: cue_pb2.CueCancel) -> Sealed:
        return pair_sealed(cancel, self._seal(wire_cancel(cancel, self.launcher_id)))

"""Operator-command intake: cheap checks before anything touches the disk (issue 23 §1).

Every operator command, whatever carried it (MQTT, a test, a local socket),
enters through :meth:`Intake.check`. It is pure and costs microseconds:

1. size (``too_large`` above :data:`MAX_COMMAND_BYTES`; a signed command is ~150 bytes),
2. decode (``decode``), then the verifier's checks without changing any state
   (``unsigned``, ``unknown_key``, ``bad_mac``, ``wrong_gateway``, ``wrong_operator``,
   ``replayed``, ``out_of_sequence``, ``stale``, ``future``, ``invalid``),
3. on an operator's lane (docs/cue-path.md §12), a command whose signing key
   is not bound to that lane's operator id (``wrong_lane``: a station's
   certificate let it publish there, but it holds another operator's key, or
   none bound),
4. a duplicate of a command already queued (``replayed``: a captured command
   flooded before the first copy was processed).

A rejected command is counted by reason and goes into a per-second summary
(:meth:`Intake.take_summary`) that the cue path journals at most once a
second: counts per reason and a digest of a few samples, never the attacker's
bytes themselves. So a flood costs no fsync per message and the audit log
grows by one bounded record a second. An accepted command goes on to the core,
which verifies it again and journals it (journal first, act second); a command
that *lowers* the authority (to HOLD, or AUTO_CUE to CUE_ON_APPROVAL) is put on
the priority lane, processed before anything queued.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from gateway.cue.authority import CommandVerifier
from hilgw.v1 import cue_pb2

__all__ = ["MAX_COMMAND_BYTES", "Checked", "Intake", "lowers_authority"]

#: A signed command is about 150 bytes; the largest legitimate one (a long
#: reason) stays well below this. Anything larger is refused before decoding.
MAX_COMMAND_BYTES = 4096
_SAMPLES = 4  # samples kept per summary window
_PENDING_MACS = 4096  # queued commands remembered to refuse their duplicates

Command = cue_pb2.AuthorityCommand | cue_pb2.CueCommand


def lowers_authority(cmd: Command, current: int) -> bool:
    """True when ``cmd`` asks for less authority than ``current`` (the priority lane)."""
    if not isinstance(cmd, cue_pb2.AuthorityCommand):
        return False
    if cmd.requested == cue_pb2.AUTHORITY_HOLD:
        return True
    return current == cue_pb2.AUTHORITY_AUTO_CUE and cmd.requested == cue_pb2.AUTHORITY_CUE_ON_APPROVAL


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of :meth:`Intake.check`: ``reason == ""`` when the command may go on."""

    kind: str
    reason: str
    command: Command | None
    lowers: bool = False


@dataclass
class Intake:
    """Counts, pre-checks and summarises operator commands (pure; clock passed in)."""

    max_bytes: int = MAX_COMMAND_BYTES
    received: int = 0
    passed: int = 0
    #: Rejections by reason since start (``/metrics``).
    rejected: dict[str, int] = field(default_factory=dict)
    _window: dict[str, int] = field(default_factory=dict)
    _samples: list[dict[str, Any]] = field(default_factory=list)
    _pending: dict[str, int] = field(default_factory=dict)

    def check(
        self,
        kind: str,
        payload: bytes,
        verifier: CommandVerifier,
        now_ns: int,
        current: int,
        *,
        lane: str | None = None,
    ) -> Checked:
        """Decide whether one command goes on to the core; count it either way.

        ``lane``: the operator id whose lane carried it (None: the shared topics).
        """
        self.received += 1
        cmd: Command | None = None
        if kind == "authority":
            cmd = cue_pb2.AuthorityCommand()
        elif kind == "cue":
            cmd = cue_pb2.CueCommand()
        if cmd is None:
            return self._reject(kind, "unknown_topic", payload, None)
        if len(payload) > self.max_bytes:
            return self._reject(kind, "too_large", payload, None)
        try:
            cmd.ParseFromString(payload)
        except (DecodeError, ValueError, RuntimeError):  # upb raises DecodeError; be wide here
            return self._reject(kind, "decode", payload, None)
        try:
            verdict = verifier.check(cmd, now_ns)
        except Exception:
            return self._reject(kind, "internal", payload, cmd)
        if not verdict.accepted:
            return self._reject(kind, verdict.reason, payload, cmd)
        if lane is not None:
            # The broker vouches for who published (the ACL's %u); the MAC for who signed.
            # Both must be the same operator, or B's command rides on A's lane.
            key = verifier.keys.get(cmd.key_id)
            if key is None or key.operator != lane:
                return self._reject(kind, "wrong_lane", payload, cmd)
        mac = verdict.mac_hex
        if mac in self._pending:
            return self._reject(kind, "replayed", payload, cmd)
        if len(self._pending) >= _PENDING_MACS:
            self._pending.pop(next(iter(self._pending)))
        self._pending[mac] = 1
        self.passed += 1
        return Checked(kind, "", cmd, lowers_authority(cmd, current))

    def done(self, cmd: Command) -> None:
        """The core has processed ``cmd``: its duplicates are now the verifier's business."""
        self._pending.pop(cmd.mac.hex(), None)

    def count(self, kind: str, reason: str, payload: bytes) -> None:
        """Count a rejection decided elsewhere (e.g. the core failed on a command)."""
        self._reject(kind, reason, payload, None)

    def _reject(self, kind: str, reason: str, payload: bytes, cmd: Command | None) -> Checked:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._window[reason] = self._window.get(reason, 0) + 1
        if len(self._samples) < _SAMPLES:
            self._samples.append(
                {
                    "kind": kind[:16],
                    "reason": reason,
                    "size": len(payload),
                    # A digest, never the bytes: an attacker's strings do not reach the log.
                    "sha256": hashlib.sha256(payload).hexdigest()[:32],
                    "key_id": (cmd.key_id[:64] if cmd is not None else ""),
                    "sequence": (int(cmd.sequence) if cmd is not None else 0),
                }
            )
        return Checked(kind, reason, cmd)

    def take_summary(self) -> dict[str, Any] | None:
        """The rejections since the last call (``None`` if none): counts and samples."""
        if not self._window:
            return None
        out = {"counts": dict(sorted(self._window.items())), "samples": self._samples}
        self._window, self._samples = {}, []
        return out

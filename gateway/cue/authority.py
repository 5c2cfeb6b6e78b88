"""Operator command verification and the engagement authority (pure, clock injected).

A command (:class:`AuthorityCommand` or :class:`CueCommand`) changes
anything only when every check passes, in this order (docs/cue-path.md §4):

1. ``unsigned``: no key id or no MAC;
2. ``unknown_key``: the key id is not an operator key;
3. ``bad_mac``: HMAC-SHA256 over the canonical bytes does not match
   (nothing else in an unauthenticated command is looked at);
4. ``wrong_gateway``: signed for another gateway;
5. ``wrong_operator``: the key is bound to another operator id;
6. ``replayed`` (this exact command was accepted before) or
   ``out_of_sequence``: sequence not above the key's high-water mark;
7. ``stale`` / ``future``: timestamp outside the freshness window (a HOLD
   is never ``stale``: lowering to HOLD is always safe, and a HOLD delayed
   by a flood must still take effect);
8. ``invalid``: an authenticated command that asks for nothing meaningful.

Only accepted commands advance a key's high-water mark, so forged or stale
commands cannot burn sequence numbers. The marks are rebuilt from the audit
log at start (:meth:`CommandVerifier.restore`), so a command accepted before a
restart cannot be replayed after it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gateway.cue.keys import Key
from gateway.cue.signing import verify
from hilgw.v1 import cue_pb2

__all__ = [
    "AUTHORITY_NAMES",
    "AuthorityStatus",
    "CommandVerifier",
    "Verdict",
    "action_name",
    "authority_name",
    "parse_authority",
]

Command = cue_pb2.AuthorityCommand | cue_pb2.CueCommand

AUTHORITY_NAMES = {
    cue_pb2.AUTHORITY_HOLD: "HOLD",
    cue_pb2.AUTHORITY_CUE_ON_APPROVAL: "CUE_ON_APPROVAL",
    cue_pb2.AUTHORITY_AUTO_CUE: "AUTO_CUE",
}
_RECENT = 256  # accepted MACs kept per key to tell a replay from a mere old sequence


def authority_name(value: int) -> str:
    for v, name in AUTHORITY_NAMES.items():
        if v == value:
            return name
    return f"UNKNOWN({value})"


def action_name(value: int) -> str:
    """``CUE_ACTION_APPROVE`` etc.; ``UNKNOWN(n)`` for a value not in cue.proto (never raises)."""
    try:
        return cue_pb2.CueAction.Name(value)  # type: ignore[arg-type]  # an enum wire value
    except ValueError:
        return f"UNKNOWN({value})"


def parse_authority(text: str) -> cue_pb2.Authority.ValueType:
    """``hold`` / ``cue_on_approval`` / ``auto_cue`` (any case, ``-`` or ``_``)."""
    norm = text.strip().upper().replace("-", "_")
    for value, name in AUTHORITY_NAMES.items():
        if name == norm:
            return value
    raise ValueError(
        f"unknown authority {text!r}; one of {', '.join(n.lower() for n in AUTHORITY_NAMES.values())}"
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str  # "" when accepted
    key_id: str
    operator_id: str
    sequence: int
    mac_hex: str


@dataclass
class AuthorityStatus:
    """The engagement authority. Always HOLD at construction: every start is a restart."""

    value: cue_pb2.Authority.ValueType = cue_pb2.AUTHORITY_HOLD
    since_ns: int = 0
    changed_by: str = "startup"
    reason: str = "start"
    sequence: int = 0

    def to_proto(self, gateway_id: str, inhibits: list[str]) -> cue_pb2.AuthorityState:
        return cue_pb2.AuthorityState(
            authority=self.value,
            since_time_ns=self.since_ns,
            changed_by=self.changed_by,
            reason=self.reason,
            sequence=self.sequence,
            gateway_id=gateway_id,
            inhibits=inhibits,
        )


@dataclass
class CommandVerifier:
    """Checks operator commands against keys, sequence high-water marks and time."""

    keys: dict[str, Key]
    gateway_id: str
    max_age_ns: int
    max_future_ns: int
    high_water: dict[str, int] = field(default_factory=dict)
    _recent: dict[str, deque[tuple[int, str]]] = field(default_factory=dict)

    def check(self, cmd: Command, now_ns: int) -> Verdict:
        """Decide on one command without changing any state."""

        def no(reason: str) -> Verdict:
            return Verdict(False, reason, cmd.key_id, cmd.operator_id, cmd.sequence, cmd.mac.hex())

        if not cmd.key_id or not cmd.mac:
            return no("unsigned")
        key = self.keys.get(cmd.key_id)
        if key is None:
            return no("unknown_key")
        if not verify(cmd, key.secret):
            return no("bad_mac")
        if cmd.gateway_id != self.gateway_id:
            return no("wrong_gateway")
        if key.operator is not None and cmd.operator_id != key.operator:
            return no("wrong_operator")
        if cmd.sequence <= self.high_water.get(cmd.key_id, 0):
            seen = any(s == cmd.sequence and m == cmd.mac.hex() for s, m in self._recent.get(cmd.key_id, ()))
            return no("replayed" if seen else "out_of_sequence")
        age = now_ns - cmd.timestamp_ns
        # A late HOLD is still a HOLD: lowering to HOLD is always safe, and a HOLD held
        # up behind a flood must not be thrown away for its age (issue 23 §1). Replays
        # are refused above (sequence); a stale raise or approval is refused here.
        late_hold = isinstance(cmd, cue_pb2.AuthorityCommand) and cmd.requested == cue_pb2.AUTHORITY_HOLD
        if age > self.max_age_ns and not late_hold:
            return no("stale")
        if -age > self.max_future_ns:
            return no("future")
        if isinstance(cmd, cue_pb2.AuthorityCommand):
            if cmd.requested not in AUTHORITY_NAMES:
                return no("invalid")
        elif cmd.action not in (cue_pb2.CUE_ACTION_APPROVE, cue_pb2.CUE_ACTION_REJECT) or cmd.cue_id == 0:
            return no("invalid")
        return Verdict(True, "", cmd.key_id, cmd.operator_id, cmd.sequence, cmd.mac.hex())

    def commit(self, verdict: Verdict) -> None:
        """Record an accepted command: its sequence becomes the key's high-water mark."""
        if not verdict.accepted:
            return
        self.restore(verdict.key_id, verdict.sequence, verdict.mac_hex)

    def restore(self, key_id: str, sequence: int, mac_hex: str) -> None:
        """Re-apply an accepted command read back from the audit log."""
        self.high_water[key_id] = max(self.high_water.get(key_id, 0), sequence)
        self._recent.setdefault(key_id, deque(maxlen=_RECENT)).append((sequence, mac_hex))

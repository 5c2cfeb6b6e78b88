"""What a launcher checks before it acks a cue (docs/icd/launcher.md §6, §7).

Sans-I/O: the launcher's clock comes in as ``now_ns``. Checks, in this
order, the first failure deciding the nack reason:

1. addressed to this launcher (``WRONG_LAUNCHER``);
2. signed: key id not 0 and a tag present (``UNSIGNED``);
3. key id provisioned (``UNKNOWN_KEY``);
4. tag verifies over the received canonical bytes, in constant time (``BAD_MAC``);
5. sequence above the highest accepted (``REPLAY``); an authentic message
   consumes its sequence whatever the later checks say, so a replay of it
   is refused too; an unauthentic one consumes nothing (an attacker cannot
   burn sequence space);
6. cue window well formed and not longer than ``max_window_ns`` (``BAD_WINDOW``);
7. ``now_ns`` inside [valid_from, valid_until] (``STALE``);
8. the launcher is READY (``NOT_READY``).

A cancel passes 1–5, then names a cue the launcher holds (``UNKNOWN_CUE``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from drivers.launcher import messages as m
from drivers.launcher.events import Cue, CueCancel, LauncherState, NackReason

__all__ = ["CueValidator"]


class CueValidator:
    """The launcher side's acceptance state: keys, highest sequence, cues held."""

    def __init__(
        self, launcher_id: int, keys: Mapping[int, bytes], *, max_window_ns: int = 60_000_000_000
    ) -> None:
        self.launcher_id = launcher_id
        self._keys = dict(keys)
        self.max_window_ns = max_window_ns
        self.highest_sequence = 0
        self.held: dict[int, Cue] = {}

    def authenticate(self, event: Cue | CueCancel) -> NackReason:
        """Checks 1–5 (addressed, signed, known key, tag, sequence) of a cue or
        cancel as received; NONE when it is authentic and new (its sequence is
        then used up)."""
        domain = m.DOMAIN_CUE if isinstance(event, Cue) else m.DOMAIN_CANCEL
        if event.launcher_id != self.launcher_id:
            return NackReason.WRONG_LAUNCHER
        if event.key_id == 0 or not event.mac:
            return NackReason.UNSIGNED
        key = self._keys.get(event.key_id)
        if key is None:
            return NackReason.UNKNOWN_KEY
        want = m.compute_mac(key, domain, event.signed_bytes)
        if not hmac.compare_digest(want, event.mac):
            return NackReason.BAD_MAC
        seq = event.sequence or 0
        if seq <= self.highest_sequence:
            return NackReason.REPLAY
        self.highest_sequence = seq
        return NackReason.NONE

    def check_cue(self, cue: Cue, now_ns: int, state: LauncherState = LauncherState.READY) -> NackReason:
        """NONE to accept (the cue is then held), else the nack reason."""
        reason = self.authenticate(cue)
        if reason is not NackReason.NONE:
            return reason
        window = cue.valid_until_ns - cue.valid_from_ns
        if window <= 0 or window > self.max_window_ns:
            return NackReason.BAD_WINDOW
        if not cue.valid_from_ns <= now_ns <= cue.valid_until_ns:
            return NackReason.STALE
        if state is not LauncherState.READY:
            return NackReason.NOT_READY
        self.held[cue.cue_id] = cue
        return NackReason.NONE

    def check_cancel(self, cancel: CueCancel) -> NackReason:
        """NONE to accept (the cue is released), else the nack reason."""
        reason = self.authenticate(cancel)
        if reason is not NackReason.NONE:
            return reason
        if self.held.pop(cancel.cue_id, None) is None:
            return NackReason.UNKNOWN_CUE
        return NackReason.NONE

    def expire(self, now_ns: int) -> None:
        """Forget held cues whose window has closed."""
        for cue_id in [c for c, cue in self.held.items() if cue.valid_until_ns < now_ns]:
            del self.held[cue_id]

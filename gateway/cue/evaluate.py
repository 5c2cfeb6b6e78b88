"""The cue core's evaluation: inhibits, open cues, candidates (a part of
:class:`gateway.cue.core.CueCore`, apart for size; docs/cue-path.md §1, §2, §5, §6).

Run on every event and on the timer. In order:

1. launcher inhibits (heartbeat, link, fault, time sync) and track inhibits
   (every contributing sensor lost), each change audited;
2. every open cue against :data:`OPEN_CUE_RULES`, an ordered table: the first
   rule that matches decides (cancel, expire, send, resend or fail);
3. every candidate (track, launcher) pair without an open cue: withheld (and
   why, audited once per reason) or opened.

What depends on the picture alone (the rules per track and launcher, the
candidate pairs, the tracks whose sensors are all lost) is worked out once
per picture and kept until the next one (:meth:`EvaluateMixin._picture`): a
launcher heartbeat, an ack or a timer tick at ~2,700 tracks re-checked every
track (~10 ms each, 4.4 s of a 6 s run on the event loop; issue 18). Every
event still runs all three steps above with the same inputs, so every
decision is the one it was; only the per-track work is not repeated.

Pure like the rest of the core: it stages audit records and effects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.cue import rules
from gateway.cue.book import Cue, Now
from gateway.cue.inhibits import LOSS_KINDS, LauncherState, launcher_inhibits, sensors_lost
from hilgw.v1 import cue_pb2, track_pb2

if TYPE_CHECKING:
    from gateway.cue.authority import AuthorityStatus
    from gateway.cue.local_hold import HoldLatch
    from gateway.sections.cue import CueConfig

__all__ = ["OPEN_CUE_RULES", "EvaluateMixin", "Picture", "PictureMemo"]

S = cue_pb2
HOLD, APPROVAL, AUTO = S.AUTHORITY_HOLD, S.AUTHORITY_CUE_ON_APPROVAL, S.AUTHORITY_AUTO_CUE


@dataclass
class Picture:
    """What this evaluation knows of the track picture."""

    fresh: bool
    #: launcher -> track -> why it is no candidate (None: it is one); rules.evaluate.
    why_not: dict[str, dict[int, str | None]] = field(default_factory=dict)
    tracks: dict[int, track_pb2.SystemTrack] = field(default_factory=dict)
    #: The (track, launcher) pairs whose reason is None, in ``why_not`` order.
    candidates: tuple[tuple[int, str], ...] = ()


@dataclass
class PictureMemo:
    """What one picture gives, worked out once (the picture is not changed once
    received; ``version`` counts :meth:`~gateway.cue.core.CueCore.on_tracks` calls)."""

    version: int
    picture: Picture
    #: (sensors down, timeout) -> the tracks whose contributors are all lost.
    lost: dict[tuple[frozenset[str], float], frozenset[int]] = field(default_factory=dict)


class EvaluateMixin:
    """Evaluation of :class:`~gateway.cue.core.CueCore` (which provides the rest)."""

    if TYPE_CHECKING:
        config: CueConfig
        authority: AuthorityStatus
        audit_ok: bool
        latched: bool
        hold_latch: HoldLatch | None
        time_sync_ok: bool
        launchers: dict[str, LauncherState]
        picture: track_pb2.TrackBatch | None
        picture_mono: int | None
        picture_version: int
        picture_memo: PictureMemo | None
        #: Per-track evaluations of the rules (``rules.evaluate``): one per picture.
        picture_evaluations: int
        sensor_down: set[str]
        cues: dict[int, Cue]
        by_pair: dict[tuple[int, str], int]
        pair_logged: dict[tuple[int, str], str]
        cooldown: dict[tuple[int, str], int]
        track_inhibit: dict[int, str]
        last_now_ns: int
        _dirty: bool

        def _log(self, now: Now, kind: str, /, **data: Any) -> None: ...
        def _set_authority(self, value: int, by: str, reason: str, sequence: int, now: Now) -> None: ...
        def _send(self, cue: Cue, now: Now) -> None: ...
        def _end(self, cue: Cue, status: int, why: str, now: Now, *, notify: bool = True) -> None: ...
        def _open(self, track: track_pb2.SystemTrack, lid: str, now: Now) -> None: ...

    def _evaluate(self, now: Now) -> None:
        self.last_now_ns = now.wall_ns
        self._update_inhibits(now)
        pic = self._picture(now)
        self._update_track_inhibits(pic, now)
        for cue in list(self.cues.values()):
            for rule in OPEN_CUE_RULES:
                if rule(self, cue, pic, now):
                    break
        self._candidates(pic, now)

    # --- inhibits ---------------------------------------------------------------------

    def _update_inhibits(self, now: Now) -> None:
        drop_on = set(self.config.inhibit.drop_to_hold_on)
        for lid, lau in self.launchers.items():
            new = launcher_inhibits(lau, now.mono_ns, self.time_sync_ok)
            if new == lau.inhibits:
                continue
            added, removed = new - lau.inhibits, lau.inhibits - new
            lau.inhibits = new
            self._dirty = True
            self._log(now, "inhibit", launcher=lid, on=sorted(added), off=sorted(removed), active=sorted(new))
            # Time sync drops to HOLD in on_time_sync (it is not per launcher).
            lost = added & LOSS_KINDS
            if lost and "launcher_heartbeat" in drop_on and self.authority.value != HOLD:
                self._set_authority(HOLD, "inhibit", f"{lid}: {', '.join(sorted(added))}", 0, now)

    def _picture(self, now: Now) -> Picture:
        pic, mono = self.picture, self.picture_mono
        max_age_ns = self.config.rules.max_picture_age_s * 1e9
        if pic is None or mono is None or now.mono_ns - mono > max_age_ns:
            return Picture(False)
        return self._memo(pic).picture

    def _memo(self, batch: track_pb2.TrackBatch) -> PictureMemo:
        """The per-picture work for ``batch`` (the current picture): done at its first
        evaluation, reused by every later event until the next picture."""
        memo = self.picture_memo
        if memo is not None and memo.version == self.picture_version:
            return memo
        why_not = rules.evaluate(self.config.rules, self.config.launchers, batch)
        self.picture_evaluations += 1
        candidates = tuple(
            (tid, lid)
            for lid, per_track in why_not.items()
            for tid, reason in per_track.items()
            if reason is None
        )
        pic = Picture(True, why_not, {t.track_id: t for t in batch.tracks}, candidates)
        memo = self.picture_memo = PictureMemo(self.picture_version, pic)
        return memo

    def _update_track_inhibits(self, pic: Picture, now: Now) -> None:
        """Per-track inhibit: every contributing sensor lost (§5)."""
        batch = self.picture
        timeout = self.config.inhibit.sensor_timeout_s
        down = self.sensor_down
        lost: frozenset[int] = frozenset()
        if batch is not None and pic.tracks:  # a fresh picture (a stale one has no tracks)
            memo = self._memo(batch)
            key = (frozenset(down), timeout)
            found = memo.lost.get(key)
            if found is None:
                found = memo.lost[key] = frozenset(
                    t for t, trk in pic.tracks.items() if sensors_lost(trk, down, batch.time_ns, timeout)
                )
            lost = found
        for tid in lost - set(self.track_inhibit):
            self.track_inhibit[tid] = "sensors_lost"
            cand = any(pic.why_not.get(lid, {}).get(tid, "x") is None for lid in self.launchers)
            self._log(now, "inhibit", track=tid, on=["sensors_lost"], off=[])
            if cand and "sensors" in self.config.inhibit.drop_to_hold_on and self.authority.value != HOLD:
                self._set_authority(HOLD, "inhibit", f"track {tid}: sensors lost", 0, now)
        for tid in set(self.track_inhibit) - lost:
            del self.track_inhibit[tid]
            if tid in pic.tracks:
                self._log(now, "inhibit", track=tid, on=[], off=["sensors_lost"])

    def _blocker(self, pic: Picture, tid: int, lid: str) -> str | None:
        """Why this pair may not have a cue now (rules, then inhibits)."""
        if not pic.fresh:
            return "picture_stale"
        reason = pic.why_not.get(lid, {}).get(tid, "track_dropped")
        if reason is not None:
            return reason
        lau = self.launchers[lid]
        if lau.inhibits:
            return f"inhibit:{','.join(sorted(lau.inhibits))}"
        return f"inhibit:{self.track_inhibit[tid]}" if tid in self.track_inhibit else None

    def _allowed(self, cue: Cue) -> bool:
        """May this cue be on a launcher now, as far as authority goes?"""
        a = self.authority.value
        ok = self.audit_ok and not self.latched
        if self.hold_latch is not None and self.hold_latch.pending():
            return False  # the local switch latched a HOLD not yet journaled (issue 23)
        return ok and (a == AUTO or (a == APPROVAL and bool(cue.approved_by)))

    # --- candidates ----------------------------------------------------------------------

    def _candidates(self, pic: Picture, now: Now) -> None:
        """Pairs without an open cue: withhold (and say why) or open one."""
        seen: set[tuple[int, str]] = set()
        for pair in pic.candidates:  # only the pairs the rules allow (once per picture: _memo)
            tid, lid = pair
            seen.add(pair)
            if pair in self.by_pair:
                continue
            if self.pair_logged.get(pair) is None:
                self._log(now, "candidate", track=tid, launcher=lid)
                self.pair_logged[pair] = "candidate"
            why = self._blocker(pic, tid, lid)
            if why is None and self.authority.value == HOLD:
                why = "authority_hold"
            if why is None and self.cooldown.get(pair, 0) > now.mono_ns:
                why = "cooldown"
            if why is None:
                self._open(pic.tracks[tid], lid, now)
            elif self.pair_logged.get(pair) != why:
                self._log(now, "withheld", track=tid, launcher=lid, why=why)
                self.pair_logged[pair] = why
        for pair in set(self.pair_logged) - seen:
            del self.pair_logged[pair]
        for pair, until in list(self.cooldown.items()):
            if until <= now.mono_ns:
                del self.cooldown[pair]


# --- the open-cue rule table ------------------------------------------------------------
#
# Each rule looks at one open cue; the first that returns True has decided.
# Order matters: a blocked pair is cancelled before anything else is considered,
# authority before validity, validity before a resend (docs/cue-path.md §1, §6).

Rule = Callable[[EvaluateMixin, Cue, Picture, Now], bool]


def _blocked(core: EvaluateMixin, cue: Cue, pic: Picture, now: Now) -> bool:
    """The rules or an inhibit no longer allow the pair: cancel."""
    why = core._blocker(pic, cue.track_id, cue.launcher_id)
    if why is not None:
        core._end(cue, S.CUE_STATUS_CANCELLED, why, now)
    return why is not None


def _pending(core: EvaluateMixin, cue: Cue, pic: Picture, now: Now) -> bool:
    """Awaiting approval: HOLD cancels, the approval timeout expires, approval or AUTO sends."""
    if cue.status != S.CUE_STATUS_PENDING_APPROVAL:
        return False
    if core.authority.value == HOLD:
        core._end(cue, S.CUE_STATUS_CANCELLED, "authority_hold", now)
    elif now.mono_ns >= cue.approval_deadline_mono and not cue.approved_by:
        core._end(cue, S.CUE_STATUS_EXPIRED, "approval_timeout", now)
    elif core.authority.value == AUTO or cue.approved_by:
        cue.auto = not cue.approved_by
        core._send(cue, now)
    return True


def _not_allowed(core: EvaluateMixin, cue: Cue, pic: Picture, now: Now) -> bool:
    """Live, but the authority no longer allows it: cancel."""
    if core._allowed(cue):
        return False
    why = "authority_hold" if core.authority.value == HOLD else "authority_lowered"
    core._end(cue, S.CUE_STATUS_CANCELLED, why, now)
    return True


def _validity_over(core: EvaluateMixin, cue: Cue, pic: Picture, now: Now) -> bool:
    """Its window is over (monotonic clock): expired at the launcher too, no cancel."""
    if now.mono_ns < cue.expires_mono:
        return False
    core._end(cue, S.CUE_STATUS_EXPIRED, "validity_over", now, notify=False)
    return True


def _ack_overdue(core: EvaluateMixin, cue: Cue, pic: Picture, now: Now) -> bool:
    """Sent, no ack in time: resend (a new sequence and tag), or fail after ``max_retries``."""
    if cue.status != S.CUE_STATUS_SENT or now.mono_ns < cue.ack_deadline_mono:
        return False
    cfg = core.config
    core._log(now, "ack_timeout", cue_id=cue.cue_id, launcher=cue.launcher_id, attempts=cue.attempts)
    if cue.attempts > cfg.max_retries:
        core._end(cue, S.CUE_STATUS_FAILED, f"no ack after {cue.attempts} sends", now)
        core.cooldown[cue.pair] = now.mono_ns + int(cfg.retry_cooldown_s * 1e9)
    else:
        core._send(cue, now)
    return True


#: The decision for each open cue, in order (first match decides; none: it stays as it is).
OPEN_CUE_RULES: tuple[Rule, ...] = (_blocked, _pending, _not_allowed, _validity_over, _ack_overdue)

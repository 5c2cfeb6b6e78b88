"""The pure core of the cue path: authority, approvals, cue bookkeeping, inhibits.

No I/O and no clock: every event method takes :class:`~gateway.cue.book.Now`
and returns the effects the shell must carry out, in order. Every decision is
first appended to the audit log (staged); the shell flushes the log (fsync)
before it carries out any effect, and if that flush fails it calls
:meth:`CueCore.audit_failed`, which drops to HOLD for good (journal first,
act second; docs/cue-path.md §5).

The one place a cue is emitted is :meth:`CueCore._send`; it re-checks that
authority and inhibits allow the send *at that moment*, whatever the caller
believed, and refuses (audited) otherwise.

One MAC per cue (docs/cue-path.md §3): the core does not sign cues or
cancels itself. It asks the launcher's link to seal them (``sealers``: the
codec's signer over the ICD's wire bytes, pure) and journals *that* tag, so
the audit record of a decision names the MAC the launcher verifies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.cue.audit import AuditLog
from gateway.cue.authority import AuthorityStatus, CommandVerifier, authority_name
from gateway.cue.book import LIVE, OPEN, Cue, Effect, Now, Publish, SendCancel, SendCue, status_name
from gateway.cue.commands import CommandsMixin
from gateway.cue.evaluate import EvaluateMixin, PictureMemo
from gateway.cue.inhibits import LauncherState
from gateway.cue.keys import KeyRing
from gateway.cue.local_hold import HoldLatch
from gateway.cue.recovery import Orphan, RecoveryScan
from gateway.cue.seal import Sealed, Sealer
from gateway.sections.cue import CueConfig
from hilgw.errors import HilgwError
from hilgw.v1 import cue_pb2, track_pb2

__all__ = ["CueCore"]

S = cue_pb2
HOLD, AUTO = S.AUTHORITY_HOLD, S.AUTHORITY_AUTO_CUE
_RECENT_ENDED = 64


class CueCore(CommandsMixin, EvaluateMixin):
    """All cue-path state and decisions. Construct it at start: it is in HOLD."""

    def __init__(
        self,
        config: CueConfig,
        keys: KeyRing,
        gateway_id: str,
        audit: AuditLog,
        now: Now,
        history: Iterable[dict[str, Any]] = (),
        *,
        sealers: Mapping[str, Sealer],
        time_sync_required: bool | None = None,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.audit = audit
        self.verifier = CommandVerifier(
            keys.operator,
            gateway_id,
            int(config.command_max_age_s * 1e9),
            int(config.command_max_future_s * 1e9),
        )
        self.launchers = {lc.id: LauncherState(lc) for lc in config.launchers}
        #: launcher id -> its link's signer (the links themselves; read at each send,
        #: so a link added later counts). A launcher without one is never cued.
        self.sealers = sealers
        self.authority = AuthorityStatus(since_ns=now.wall_ns)
        self.audit_ok = True
        #: Set by the shell the instant a HOLD arrives (local switch, or a verified HOLD
        #: command), before it is journaled: no cue leaves while set. It only forbids,
        #: so it may act ahead of the journal; cleared once the HOLD was processed.
        self.latched = False
        #: The local hold process's latch (shared memory, set without this process's
        #: GIL; gateway.cue.local_hold): no cue leaves while it is pending.
        self.hold_latch: HoldLatch | None = None
        need_sync = (
            config.inhibit.time_sync.kind != "none" if time_sync_required is None else time_sync_required
        )
        self.time_sync_ok = not need_sync  # unknown counts as lost until the first good check
        self.time_sync_detail = "not checked yet" if need_sync else ""
        self.sensor_down: set[str] = set()
        self.picture: track_pb2.TrackBatch | None = None
        self.picture_mono: int | None = None
        #: Pictures received; the per-picture work of the evaluation is kept per version.
        self.picture_version = 0
        self.picture_memo: PictureMemo | None = None
        self.picture_evaluations = 0  # rules.evaluate runs (tests: once per picture, not per event)
        self.cues: dict[int, Cue] = {}  # open cues (pending, sent, acked)
        self.by_pair: dict[tuple[int, str], int] = {}
        self.ended: deque[Cue] = deque(maxlen=_RECENT_ENDED)
        self.pair_logged: dict[tuple[int, str], str] = {}  # last audited decision per pair
        self.cooldown: dict[tuple[int, str], int] = {}  # pair -> mono ns until which it waits
        self.track_inhibit: dict[int, str] = {}
        self.cancel_sequences: deque[tuple[str, int]] = deque(maxlen=1024)  # (launcher, sequence) of cancels
        self.next_cue_id = 1
        self.last_now_ns = now.wall_ns
        self.counters: dict[str, int] = {}
        # Observation only (hilgw_cue_ack_seconds), never read by a decision:
        # monotonic ns of each open cue's last send, and (launcher, ns from that
        # send to its ack or nack) for the shell to drain.
        self.sent_mono: dict[int, int] = {}
        self.ack_latency: deque[tuple[str, int]] = deque(maxlen=1024)
        self.orphans: dict[int, Orphan] = {}  # cues a previous run may have left live
        self._effects: list[Effect] = []
        self._dirty = True
        self._restore(history)
        # The core is the one owner of launcher sequence numbers (ICD §7.3). Beyond
        # the journal, start no lower than the UTC second: a lost journal then
        # reuses no sequence unless more than one a second was sent on average.
        floor = (now.wall_ns // 1_000_000_000) & 0xFFFFFFFF
        for lau in self.launchers.values():
            lau.sequence = max(lau.sequence, floor)
        #: Answers that failed verification, per (launcher, reason) (ICD v2 §7.5).
        self.reply_rejected: dict[tuple[str, str], int] = {}
        self._log(
            now,
            "startup",
            authority="HOLD",
            gateway_id=gateway_id,
            command_high_water=dict(self.verifier.high_water),
            launcher_sequence={k: v.sequence for k, v in self.launchers.items()},
            possibly_live=sorted(self.orphans),
        )
        self._cancel_orphans(now)

    # --- restart ------------------------------------------------------------------

    def _restore(self, history: Iterable[dict[str, Any]]) -> None:
        """Rebuild replay high-water marks and sequence counters from the audit log.
        Authority is *not* restored: a restart is always HOLD."""
        scan = RecoveryScan()
        for rec in history:
            scan.add(rec)
            d = rec.get("data", {})
            if rec.get("kind") == "command_accepted":
                self.verifier.restore(d["key_id"], int(d["sequence"]), d["mac"])
            if "launcher" in d and "sequence" in d and d["launcher"] in self.launchers:
                lau = self.launchers[d["launcher"]]
                lau.sequence = max(lau.sequence, int(d["sequence"]))
            if "cue_id" in d:
                self.next_cue_id = max(self.next_cue_id, int(d["cue_id"]) + 1)
        self.orphans = {
            o.cue_id: o for o in scan.orphans(self.last_now_ns) if o.launcher_id in self.launchers
        }

    # --- plumbing -------------------------------------------------------------------

    def _log(self, now: Now, kind: str, /, **data: Any) -> None:
        self.audit.append(kind, data, now.wall_ns)
        self.counters[kind] = self.counters.get(kind, 0) + 1

    def _take(self) -> list[Effect]:
        if self._dirty:
            self._dirty = False
            self._effects.append(Publish("authority", self.authority_state(), retain=True))
            self._effects.append(Publish("cues", self.cue_list(), retain=True))
        out, self._effects = self._effects, []
        if not self.audit_ok:
            return [e for e in out if isinstance(e, Publish)]
        return out

    def inhibits(self) -> list[str]:
        out = [f"launcher:{lid}:{why}" for lid, lau in self.launchers.items() for why in sorted(lau.inhibits)]
        if not self.time_sync_ok:
            out.append("time_sync")
        if not self.audit_ok:
            out.append("audit")
        return out

    def authority_state(self) -> cue_pb2.AuthorityState:
        return self.authority.to_proto(self.gateway_id, self.inhibits())

    def cue_list(self) -> cue_pb2.CueList:
        msg = cue_pb2.CueList(
            gateway_id=self.gateway_id, time_ns=self.last_now_ns, authority=self.authority.value
        )
        msg.cues.extend(c.to_proto() for c in [*self.cues.values(), *self.ended])
        return msg

    # --- events -----------------------------------------------------------------------

    def tick(self, now: Now) -> list[Effect]:
        """The timer: timeouts and inhibits (call every <= 100 ms)."""
        self._evaluate(now)
        return self._take()

    def on_tracks(self, batch: track_pb2.TrackBatch, now: Now) -> list[Effect]:
        self.picture, self.picture_mono = batch, now.mono_ns
        self.picture_version += 1  # the rules are evaluated anew for it, once (gateway.cue.evaluate)
        self._evaluate(now)
        return self._take()

    def on_sensor_health(self, sensor_id: str, alive: bool, now: Now) -> list[Effect]:
        if alive != (sensor_id not in self.sensor_down):
            (self.sensor_down.discard if alive else self.sensor_down.add)(sensor_id)
            self._log(now, "sensor_up" if alive else "sensor_down", sensor=sensor_id)
        self._evaluate(now)
        return self._take()

    def on_heartbeat(
        self, launcher_id: str, now: Now, ok: bool = True, detail: str = "", rx_mono_ns: int = 0
    ) -> list[Effect]:
        """An authenticated heartbeat. ``rx_mono_ns``: when the link heard it (0:
        unknown); the heartbeat timeout runs from the earlier of that and ``now``, so
        time spent queued before this call never extends a launcher's life (§5)."""
        lau = self.launchers.get(launcher_id)
        if lau is not None and lau.link_up:  # while the link is down, heartbeats count for nothing
            heard = min(now.mono_ns, rx_mono_ns) if rx_mono_ns > 0 else now.mono_ns
            prev = lau.last_heartbeat_mono
            lau.last_heartbeat_mono = heard if prev is None else max(prev, heard)
            lau.unverified_heartbeats = 0
            lau.fault = "" if ok else (detail or "fault")
        self._evaluate(now)
        return self._take()

    def on_reply_rejected(self, launcher_id: str, message: str, reason: str, now: Now) -> list[Effect]:
        """An ack or heartbeat that failed verification (ICD v2 §7.5). It is no
        heartbeat: a launcher whose heartbeats stop verifying goes
        ``heartbeat_lost`` (and ``heartbeat_unverified``) on the heartbeat timer.
        Audited at the 1st, 2nd, 4th, 8th, ... of each (launcher, reason), so a
        flood of forgeries cannot flood the journal."""
        lau = self.launchers.get(launcher_id)
        if lau is not None and message == "LAUNCHER_STATUS":
            lau.unverified_heartbeats += 1
        key = (launcher_id, reason)
        n = self.reply_rejected[key] = self.reply_rejected.get(key, 0) + 1
        if n & (n - 1) == 0:
            self._log(now, "reply_rejected", launcher=launcher_id, message=message, reason=reason, count=n)
        self._evaluate(now)
        return self._take()

    def on_link(self, launcher_id: str, up: bool, now: Now) -> list[Effect]:
        lau = self.launchers.get(launcher_id)
        if lau is not None:
            if up != lau.link_up:
                lau.last_heartbeat_mono = None  # a reconnect must hear a fresh heartbeat first
                if up:
                    self._cancel_orphans(now, launcher_id)
            lau.link_up = up
        self._evaluate(now)
        return self._take()

    def on_time_sync(self, ok: bool, detail: str, now: Now) -> list[Effect]:
        if ok != self.time_sync_ok:
            self._log(now, "time_sync", ok=ok, detail=detail)
            self._dirty = True
            drop = "time_sync" in self.config.inhibit.drop_to_hold_on
            if not ok and drop and self.authority.value != HOLD:
                self._set_authority(HOLD, "inhibit", f"time sync lost: {detail}", 0, now)
        self.time_sync_ok, self.time_sync_detail = ok, detail
        self._evaluate(now)
        return self._take()

    def on_operator_link(self, up: bool, detail: str, now: Now) -> list[Effect]:
        """The broker link that carries operator commands came up or went down:
        audited only; authority is untouched (docs/cue-path.md §11)."""
        self._log(now, "operator_link", up=up, detail=detail)
        return self._take()

    def operator_link_lost(self, down_s: float, now: Now) -> list[Effect]:
        """No operator link for ``operator_link_timeout_s``: authority above HOLD
        falls to HOLD, an audited decision (reason ``operator_link_lost``); the
        evaluation that follows cancels every live and pending cue (§1)."""
        self._log(now, "operator_link", up=False, down_s=round(down_s, 3), hold=self.authority.value != HOLD)
        if self.authority.value != HOLD:
            self._set_authority(HOLD, "operator_link", "operator_link_lost", 0, now)
        self._evaluate(now)
        return self._take()

    def audit_failed(self, now: Now, why: str) -> list[Effect]:
        """The log cannot be written: nothing may leave any more (until a restart)."""
        self.audit_ok = False
        self.authority = AuthorityStatus(HOLD, now.wall_ns, "audit", f"audit log failed: {why}")
        for cue in list(self.cues.values()):
            self._end(cue, S.CUE_STATUS_CANCELLED, "audit_failed", now, notify=False)
        self._dirty = True
        return self._take()

    def on_ack(self, ack: cue_pb2.CueAck, now: Now) -> list[Effect]:
        cue = self.cues.get(ack.cue_id)
        result = "ack" if ack.result == S.ACK_RESULT_ACK else "nack"
        info = {
            "cue_id": ack.cue_id,
            "launcher": ack.launcher_id,
            "ack_sequence": ack.sequence,
            "reason_code": ack.reason_code,
            "reason": ack.reason,
        }
        ours = cue is not None and (ack.sequence == 0 or ack.sequence in cue.sequences)
        if (ack.launcher_id, ack.sequence) in self.cancel_sequences:
            self._log(now, f"cancel_{result}ed", **info)  # the answer to a cancel (ICD §5.4)
            self.orphans.pop(ack.cue_id, None)
        elif cue is None or not ours or cue.launcher_id != ack.launcher_id or cue.status not in LIVE:
            self._log(now, f"{result}_unmatched", **info)
        elif ack.result == S.ACK_RESULT_ACK:
            if cue.status == S.CUE_STATUS_SENT:
                cue.status, cue.updated_ns = S.CUE_STATUS_ACKED, now.wall_ns
                self._log(now, "acked", **info)
                self._dirty = True
                self._observe_ack(cue, now)
        else:
            self._log(now, "nacked", **info)
            self._observe_ack(cue, now)
            self._end(cue, S.CUE_STATUS_NACKED, f"nack {ack.reason_code}: {ack.reason}", now, notify=False)
            self.cooldown[cue.pair] = now.mono_ns + int(self.config.retry_cooldown_s * 1e9)
        self._effects.append(Publish("ack", ack))
        self._evaluate(now)
        return self._take()

    def _observe_ack(self, cue: Cue, now: Now) -> None:
        """Note the time from the cue's last send to this answer (metrics only)."""
        sent = self.sent_mono.get(cue.cue_id)
        if sent is not None:
            self.ack_latency.append((cue.launcher_id, max(now.mono_ns - sent, 0)))

    def _set_authority(self, value: int, by: str, reason: str, sequence: int, now: Now) -> None:
        old = self.authority.value
        # Journaled before it takes effect (the shell flushes before any send).
        self._log(
            now,
            "authority_changed",
            old=authority_name(old),
            new=authority_name(value),
            by=by,
            reason=reason,
            sequence=sequence,
        )
        self.authority = AuthorityStatus(value, now.wall_ns, by, reason, sequence)  # type: ignore[arg-type]
        self._dirty = True

    # --- cue life ---------------------------------------------------------------------------

    def _open(self, track: track_pb2.SystemTrack, lid: str, now: Now) -> None:
        cue_id = self.next_cue_id
        self.next_cue_id += 1
        cue = Cue(cue_id, lid, track.track_id, S.CUE_STATUS_PENDING_APPROVAL, now, now.wall_ns)
        msg = cue_pb2.EngagementCue(
            cue_id=cue_id,
            launcher_id=lid,
            system_track_id=track.track_id,
            time_of_validity_ns=track.last_update_time_ns,
            gateway_id=self.gateway_id,
        )
        msg.state.CopyFrom(track.state)
        cue.message = msg
        self.cues[cue_id] = cue
        self.by_pair[cue.pair] = cue_id
        self.pair_logged[cue.pair] = "open"
        self._dirty = True
        if self.authority.value == AUTO:
            cue.auto = True
            self._send(cue, now)
        else:
            cue.approval_deadline_mono = now.mono_ns + int(self.config.approval_timeout_s * 1e9)
            self._log(now, "pending_approval", cue_id=cue_id, track=track.track_id, launcher=lid)

    def _send(self, cue: Cue, now: Now) -> None:
        """The single exit of every cue. Re-checks authority and inhibits here."""
        lau = self.launchers[cue.launcher_id]
        msg = cue.message
        allowed = self._allowed(cue)  # authority (and approval), the audit, the HOLD latch
        if not allowed or lau.inhibits or msg is None or cue.track_id in self.track_inhibit:
            why = "authority" if not allowed else "inhibit"
            self._log(now, "send_refused", cue_id=cue.cue_id, launcher=cue.launcher_id, why=why)
            self._end(cue, S.CUE_STATUS_CANCELLED, f"send refused: {why}", now)
            return
        resend = cue.attempts > 0
        validity = int(self.config.cue_validity_s * 1e9)
        if not resend:
            msg.valid_from_ns = now.wall_ns
            msg.valid_until_ns = now.wall_ns + validity
        msg.sequence, msg.attempt = lau.sequence + 1, cue.attempts
        sealed = self._seal(cue.launcher_id, msg, now, cue_id=cue.cue_id)
        if sealed is None:
            self._end(cue, S.CUE_STATUS_CANCELLED, "send refused: seal", now)
            return
        lau.sequence += 1  # consumed only now: a cue that could not be sealed used none
        if not resend:
            cue.expires_mono = now.mono_ns + validity  # local expiry on the monotonic clock
        assert isinstance(sealed.message, cue_pb2.EngagementCue)
        msg.CopyFrom(sealed.message)  # key_id and mac: the wire's (one MAC per cue)
        cue.attempts += 1
        cue.sequences.append(lau.sequence)
        cue.status, cue.updated_ns = S.CUE_STATUS_SENT, now.wall_ns
        cue.ack_deadline_mono = now.mono_ns + int(self.config.ack_timeout_s * 1e9)
        self.sent_mono[cue.cue_id] = now.mono_ns
        self._log(
            now,
            "cue_resent" if resend else "cue_sent",
            cue_id=cue.cue_id,
            launcher=cue.launcher_id,
            track=cue.track_id,
            sequence=msg.sequence,
            attempt=msg.attempt,
            key_id=sealed.key_id,
            valid_from_ns=msg.valid_from_ns,
            valid_until_ns=msg.valid_until_ns,
            authority=authority_name(self.authority.value),
            approved_by=cue.approved_by,
            mac=sealed.tag.hex(),
        )
        self._effects.append(SendCue(cue.launcher_id, sealed))
        self._effects.append(Publish("cue", sealed.message))
        self._dirty = True

    def _seal(
        self, lid: str, msg: cue_pb2.EngagementCue | cue_pb2.CueCancel, now: Now, **about: Any
    ) -> Sealed | None:
        """The launcher link's seal of ``msg``, or None (audited ``send_refused``,
        ``why = "seal"``) when the link cannot carry it: no link, no key, a value
        outside the ICD's range. Nothing that cannot be sealed leaves."""
        sealer = self.sealers.get(lid)
        try:
            if sealer is None:
                raise HilgwError(f"no launcher link for {lid}")
            if isinstance(msg, cue_pb2.EngagementCue):
                return sealer.seal_cue(msg)
            return sealer.seal_cancel(msg)
        except (HilgwError, ValueError) as exc:
            kind = "cue" if isinstance(msg, cue_pb2.EngagementCue) else "cancel"
            detail = f"{type(exc).__name__}: {exc}"[:300]
            self._log(now, "send_refused", launcher=lid, message=kind, why="seal", detail=detail, **about)
            return None

    def _end(self, cue: Cue, status: int, why: str, now: Now, *, notify: bool = True) -> None:
        """Close a cue; a live one gets a cancel unless ``notify`` is False."""
        was_live = cue.status in LIVE
        cue.status, cue.detail, cue.updated_ns = status, why, now.wall_ns
        self.cues.pop(cue.cue_id, None)
        self.sent_mono.pop(cue.cue_id, None)
        if self.by_pair.get(cue.pair) == cue.cue_id:
            del self.by_pair[cue.pair]
        self.pair_logged.pop(cue.pair, None)
        self.ended.append(cue)
        self._dirty = True
        self._log(
            now,
            status_name(status).lower(),
            cue_id=cue.cue_id,
            launcher=cue.launcher_id,
            track=cue.track_id,
            why=why,
        )
        if was_live and notify and self.audit_ok:
            self._cancel(cue.launcher_id, cue.cue_id, cue.track_id, why, now)

    def _cancel(
        self, lid: str, cue_id: int, track_id: int, why: str, now: Now, kind: str = "cancel_sent"
    ) -> None:
        """Journal and stage a sealed cancel of one cue (a new launcher sequence)."""
        lau = self.launchers[lid]
        cancel = cue_pb2.CueCancel(
            cue_id=cue_id,
            launcher_id=lid,
            system_track_id=track_id,
            sequence=lau.sequence + 1,
            time_ns=now.wall_ns,
            reason=why,
            gateway_id=self.gateway_id,
        )
        sealed = self._seal(lid, cancel, now, cue_id=cue_id)
        if sealed is None:
            return
        lau.sequence += 1
        self.cancel_sequences.append((lid, lau.sequence))
        self._log(
            now,
            kind,
            cue_id=cue_id,
            launcher=lid,
            sequence=lau.sequence,
            why=why,
            key_id=sealed.key_id,
            mac=sealed.tag.hex(),
        )
        self._effects.append(SendCancel(lid, sealed))

    def _cancel_orphans(self, now: Now, launcher_id: str | None = None) -> None:
        """Cancel the cues a previous run may have left live (gateway.cue.recovery);
        again whenever a launcher's link comes up, until the launcher answers."""
        for o in list(self.orphans.values()):
            if o.valid_until_ns <= now.wall_ns:
                del self.orphans[o.cue_id]  # its validity is over at the launcher too
            elif launcher_id is None or o.launcher_id == launcher_id:
                self._cancel(o.launcher_id, o.cue_id, o.track_id, "gateway restart", now, "restart_cancel")

    # --- views --------------------------------------------------------------------------------

    def open_cues(self) -> list[Cue]:
        return [c for c in self.cues.values() if c.status in OPEN]

"""Operator commands in the cue core: verification, approvals, results, local holds
and contained faults (a part of :class:`gateway.cue.core.CueCore`, apart for size).

Pure like the rest of the core: every method takes :class:`~gateway.cue.book.Now`
and stages audit records and effects; the shell flushes before acting.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from gateway.cue.authority import AuthorityStatus, CommandVerifier, Verdict, action_name, authority_name
from gateway.cue.book import LIVE, Cue, Effect, Now, Publish, status_name
from gateway.cue.outputs import state_digest
from hilgw.v1 import cue_pb2

if TYPE_CHECKING:
    from gateway.sections.cue import CueConfig

__all__ = ["CommandsMixin"]

S = cue_pb2
HOLD = S.AUTHORITY_HOLD


class CommandsMixin:
    """Command handling of :class:`~gateway.cue.core.CueCore` (which provides the rest)."""

    if TYPE_CHECKING:
        config: CueConfig
        gateway_id: str
        verifier: CommandVerifier
        authority: AuthorityStatus
        audit_ok: bool
        cues: dict[int, Cue]
        cooldown: dict[tuple[int, str], int]
        _effects: list[Effect]
        _dirty: bool

        def _log(self, now: Now, kind: str, /, **data: Any) -> None: ...
        def _take(self) -> list[Effect]: ...
        def _evaluate(self, now: Now) -> None: ...
        def _set_authority(self, value: int, by: str, reason: str, sequence: int, now: Now) -> None: ...
        def _end(self, cue: Cue, status: int, why: str, now: Now, *, notify: bool = True) -> None: ...

    def on_authority_command(self, payload: bytes, now: Now) -> list[Effect]:
        cmd = cue_pb2.AuthorityCommand()
        verdict = self._verify(cmd, payload, "authority", now)
        if verdict is not None and verdict.accepted:
            self._set_authority(
                cmd.requested, cmd.operator_id, cmd.reason or "operator command", cmd.sequence, now
            )
        self._evaluate(now)
        return self._take()

    def on_cue_command(self, payload: bytes, now: Now) -> list[Effect]:
        cmd = cue_pb2.CueCommand()
        verdict = self._verify(cmd, payload, "cue", now)
        if verdict is not None and verdict.accepted:
            cue = self.cues.get(cmd.cue_id)
            approve = cmd.action == S.CUE_ACTION_APPROVE
            if cue is None or cue.status != S.CUE_STATUS_PENDING_APPROVAL:
                why = "unknown_cue" if cue is None else f"not_pending ({status_name(cue.status)})"
                self._log(
                    now,
                    "approval_ignored" if approve else "reject_ignored",
                    cue_id=cmd.cue_id,
                    operator=cmd.operator_id,
                    why=why,
                )
            elif approve:
                cue.approved_by = cmd.operator_id
                self._log(
                    now,
                    "approved",
                    cue_id=cue.cue_id,
                    launcher=cue.launcher_id,
                    track=cue.track_id,
                    operator=cmd.operator_id,
                )
            else:
                self._log(now, "rejected", cue_id=cue.cue_id, operator=cmd.operator_id, reason=cmd.reason)
                self._end(cue, S.CUE_STATUS_REJECTED, f"rejected by {cmd.operator_id}", now)
                self.cooldown[cue.pair] = now.mono_ns + int(self.config.approval_timeout_s * 1e9)
        self._evaluate(now)
        return self._take()

    # --- commands -----------------------------------------------------------------------

    def _verify(
        self, cmd: cue_pb2.AuthorityCommand | cue_pb2.CueCommand, payload: bytes, kind: str, now: Now
    ) -> Verdict | None:
        try:
            cmd.ParseFromString(payload)
        except DecodeError:
            self._log(now, "command_rejected", kind=kind, reason="decode", size=len(payload))
            self._result(kind, False, "decode", cmd, now)
            return None
        verdict = self.verifier.check(cmd, now.wall_ns)
        what: dict[str, Any] = {
            "kind": kind,
            "key_id": cmd.key_id,
            "operator": cmd.operator_id,
            "sequence": cmd.sequence,
            "timestamp_ns": cmd.timestamp_ns,
        }
        if isinstance(cmd, cue_pb2.AuthorityCommand):
            what["requested"] = authority_name(cmd.requested)
        else:
            # Not CueAction.Name: an unknown wire value (proto3 keeps it) would raise
            # there and kill the cue path (issue 23 §2, hex 08631001).
            what["action"], what["target_cue"] = action_name(cmd.action), cmd.cue_id
        lowers = isinstance(cmd, cue_pb2.AuthorityCommand) and cmd.requested == HOLD
        binding = self._approval_binding(cmd, now) if verdict.accepted else ""
        if binding:
            verdict = Verdict(False, binding, *dataclasses.astuple(verdict)[2:])
        if verdict.accepted and not self.audit_ok and not lowers:
            # The authority shown must be the one in effect: after an audit failure
            # nothing but HOLD may be asked (issue 23 §5).
            verdict = Verdict(False, "audit_failed", *dataclasses.astuple(verdict)[2:])
        if verdict.accepted:
            self._log(now, "command_accepted", mac=verdict.mac_hex, **what)
            self.verifier.commit(verdict)
        else:
            self._log(now, "command_rejected", reason=verdict.reason, **what)
        self._result(kind, verdict.accepted, verdict.reason, cmd, now)
        return verdict

    def note(self, now: Now, kind: str, /, **data: Any) -> list[Effect]:
        """Journal one record the shell decided (a rejection summary, a local hold's
        source, a contained fault) and return the pending effects."""
        self._log(now, kind, **data)
        return self._take()

    def local_hold(self, now: Now, source: str) -> list[Effect]:
        """HOLD from a local switch (UNIX socket, signal): no broker, no key; the
        filesystem permission of the socket is the authentication. Audited like any
        authority change; live cues are cancelled by the evaluation that follows."""
        self._log(now, "local_hold", source=source, was=authority_name(self.authority.value))
        if self.authority.value != HOLD:
            self._set_authority(HOLD, f"local:{source}", "local hold", 0, now)
        self._evaluate(now)
        return self._take()

    def contain_fault(self, now: Now, where: str, error: str, *, kind: str = "fault") -> list[Effect]:
        """An event handler raised: fall to HOLD, cancel every live cue, journal the
        fault with the authority it fell to and the cues it cancelled. The cue path
        keeps running (a task crash would leave acked cues without a cancel)."""
        live = [c.cue_id for c in self.cues.values() if c.status in LIVE]
        was = authority_name(self.authority.value)
        self.authority = AuthorityStatus(HOLD, now.wall_ns, kind, f"{where}: {error}"[:200])
        self._dirty = True
        for cue in list(self.cues.values()):
            try:
                self._end(cue, S.CUE_STATUS_CANCELLED, "fault", now)
            except Exception:
                self.cues.pop(cue.cue_id, None)
        self._log(now, kind, where=where, error=error, was=was, authority="HOLD", cancelled_live=sorted(live))
        return self._take()

    def _approval_binding(self, cmd: cue_pb2.AuthorityCommand | cue_pb2.CueCommand, now: Now) -> str:
        """Why an approval does not bind the cue as it stands ("" when it does): the
        operator approved a track and a cued state, until an expiry (issue 23 §3)."""
        if not isinstance(cmd, cue_pb2.CueCommand) or cmd.action != S.CUE_ACTION_APPROVE:
            return ""
        cue = self.cues.get(cmd.cue_id)
        if cue is None or cue.message is None:
            return ""  # answered as approval_ignored (unknown_cue / not pending)
        if cmd.expires_ns <= now.wall_ns:
            return "approval_expired"
        if cmd.track_id != cue.track_id or cmd.state_digest != state_digest(cue.message):
            return "approval_mismatch"
        return ""

    def _result(
        self, kind: str, ok: bool, reason: str, cmd: cue_pb2.AuthorityCommand | cue_pb2.CueCommand, now: Now
    ) -> None:
        res = cue_pb2.CommandResult(
            kind=kind,
            accepted=ok,
            reason=reason,
            operator_id=cmd.operator_id,
            key_id=cmd.key_id,
            sequence=cmd.sequence,
            time_ns=now.wall_ns,
            gateway_id=self.gateway_id,
        )
        if isinstance(cmd, cue_pb2.CueCommand):
            res.cue_id = cmd.cue_id
        self._effects.append(Publish("result", res))

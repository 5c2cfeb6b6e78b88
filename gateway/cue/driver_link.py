"""Adapter: the launcher device driver (gateway/devices/launcher.py) as a LauncherLink.

The core journals and signs an :class:`EngagementCue` (the message-model
MAC, docs/cue-path.md §3); this adapter turns it into the ICD's cue
(docs/icd/launcher.md §5.1) with the *same* sequence number, and the driver's
codec signs the wire bytes with the device's cue key (ICD §7). Acks and
status frames come back through the driver's listener and go to the cue path
as :class:`~gateway.cue.link.Ack` / :class:`~gateway.cue.link.Heartbeat`.

Sequence numbers belong to the cue path (journaled before use, ICD §7.3):
the adapter carries the core's sequence to the wire unchanged, and the driver
keeps no counter of its own. Acks and heartbeats that fail the codec's
verification (ICD v2 §7.5) come back as :class:`~gateway.cue.link.ReplyRejected`
for the audit; they never count as a heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from drivers.base import Rejected
from drivers.launcher import Ack as WireAck
from drivers.launcher import AckResult, Cue, CueCancel, LauncherState, LauncherStatus
from gateway.cue.link import Ack, Heartbeat, LauncherEvent, ReplyRejected
from gateway.devices.launcher import LauncherDriver, LauncherIn
from hilgw.v1 import cue_pb2

__all__ = ["CANCEL_REASONS", "DriverLink", "link_event"]

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
    if reason.startswith("inhibit:"):
        return _INHIBIT
    return CANCEL_REASONS.get(reason, _OTHER)


class DriverLink:
    """One launcher device driver, as the cue path's LauncherLink."""

    def __init__(
        self, launcher_id: str, driver: LauncherDriver, sink: Callable[[LauncherEvent], None]
    ) -> None:
        self.launcher_id = launcher_id
        self.driver = driver
        self.sink = sink
        driver.add_listener(self._on_event)
        driver.add_rejection_listener(self._on_rejected)

    @property
    def wire_id(self) -> int:
        return self.driver.config.launcher_id or 0

    async def send_cue(self, cue: cue_pb2.EngagementCue) -> None:
        s = cue.state
        cov = np.asarray(s.covariance, dtype=float) if len(s.covariance) == 36 else np.zeros(36)
        wire = Cue.from_state(
            state=[s.x, s.y, s.z, s.vx, s.vy, s.vz],
            covariance=cov.reshape(6, 6),
            launcher_id=self.wire_id,
            key_id=0,  # the driver fills in the device's cue_key_id and signs
            cue_id=int(cue.cue_id),
            system_track_id=int(cue.system_track_id),
            time_of_validity_ns=int(cue.time_of_validity_ns),
            valid_from_ns=int(cue.valid_from_ns),
            valid_until_ns=int(cue.valid_until_ns),
            sequence=int(cue.sequence),
        )
        await self.driver.send_cue(wire)

    async def send_cancel(self, cancel: cue_pb2.CueCancel) -> None:
        wire = CueCancel(
            launcher_id=self.wire_id,
            key_id=0,
            cue_id=int(cancel.cue_id),
            issue_time_ns=int(cancel.time_ns),
            reason=cancel_code(cancel.reason),
            sequence=int(cancel.sequence),
        )
        await self.driver.send_cancel(wire)

    def _on_rejected(self, _device_id: str, rejected: Rejected) -> None:
        self.sink(link_event(self.launcher_id, rejected))

    def _on_event(self, item: LauncherIn) -> None:
        self.sink(link_event(self.launcher_id, item.event))


def link_event(launcher_id: str, ev: WireAck | LauncherStatus | Rejected) -> LauncherEvent:
    """What the cue path hears of one verified answer, or of one that failed verification."""
    if isinstance(ev, Rejected):
        err = ev.error
        return ReplyRejected(launcher_id, str(err.field or ""), ev.reason, str(err))
    if isinstance(ev, WireAck):
        ok = ev.result is AckResult.ACK
        return Ack(
            cue_pb2.CueAck(
                cue_id=ev.cue_id,
                launcher_id=launcher_id,
                result=cue_pb2.ACK_RESULT_ACK if ok else cue_pb2.ACK_RESULT_NACK,
                reason_code=int(ev.reason),
                reason="" if ok else ev.reason.name.lower(),
                time_ns=ev.launcher_time_ns,
                sequence=ev.cue_sequence,
            )
        )
    ready = ev.state is LauncherState.READY
    detail = (
        ""
        if ready and ev.time_locked
        else f"{ev.state.name.lower()}" + ("" if ev.time_locked else ", time not locked")
    )
    if ev.fault_code:
        detail += f", fault code {ev.fault_code}"
    return Heartbeat(launcher_id, ready and ev.time_locked, detail, ev.launcher_time_ns)

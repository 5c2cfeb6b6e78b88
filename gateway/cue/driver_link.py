"""Adapter: the launcher device driver (gateway/devices/launcher.py) as a LauncherLink.

One MAC per cue (docs/cue-path.md §3): the core asks :meth:`DriverLink.seal_cue`
for the ICD's cue (docs/icd/launcher.md §5.1) with the *same* sequence number,
signed by the driver's codec signer with the device's cue key (ICD §7); it
journals that tag, and :meth:`DriverLink.send` then puts exactly that sealed
cue on the wire. Acks and status frames come back through the driver's
listener and go to the cue path as :class:`~gateway.cue.link.Ack` /
:class:`~gateway.cue.link.Heartbeat`.

Sequence numbers belong to the cue path (journaled before use, ICD §7.3):
the adapter carries the core's sequence to the wire unchanged, and the driver
keeps no counter of its own. Acks and heartbeats that fail the codec's
verification (ICD v2 §7.5) come back as :class:`~gateway.cue.link.ReplyRejected`
for the audit; they never count as a heartbeat.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from drivers.base import Rejected
from drivers.launcher import Ack as WireAck
from drivers.launcher import AckResult, Cue, CueCancel, LauncherState, LauncherStatus
from gateway.cue.link import Ack, Heartbeat, LauncherEvent, ReplyRejected
from gateway.cue.seal import CANCEL_REASONS, Sealed, cancel_code, pair_sealed, wire_cancel, wire_cue
from gateway.devices.launcher import LauncherDriver, LauncherIn
from hilgw.v1 import cue_pb2

__all__ = ["CANCEL_REASONS", "DriverLink", "cancel_code", "link_event"]


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

    def seal_cue(self, cue: cue_pb2.EngagementCue) -> Sealed:
        """The ICD cue for ``cue``, signed by the driver (device's ``cue_key_id``)."""
        return pair_sealed(cue, self.driver.seal(wire_cue(cue, self.wire_id)))

    def seal_cancel(self, cancel: cue_pb2.CueCancel) -> Sealed:
        return pair_sealed(cancel, self.driver.seal(wire_cancel(cancel, self.wire_id)))

    async def send(self, sealed: Sealed) -> None:
        """Send the sealed cue or cancel byte for byte (the driver does not re-sign it)."""
        if isinstance(sealed.wire, Cue):
            await self.driver.send_cue(sealed.wire)
        else:
            assert isinstance(sealed.wire, CueCancel)
            await self.driver.send_cancel(sealed.wire)

    def _on_rejected(self, _device_id: str, rejected: Rejected) -> None:
        self.sink(link_event(self.launcher_id, rejected))

    def _on_event(self, item: LauncherIn) -> None:
        event = link_event(self.launcher_id, item.event)
        if isinstance(event, Heartbeat):  # when it was heard, not when the cue path gets to it
            event = dataclasses.replace(event, rx_mono_ns=time.monotonic_ns())
        self.sink(event)


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

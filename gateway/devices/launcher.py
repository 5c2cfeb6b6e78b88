"""Driver of a launcher interface on CAN FD or serial (docs/icd/launcher.md).

It sends what it is given (:meth:`LauncherDriver.send_cue`,
:meth:`LauncherDriver.send_cancel`) and receives acks, nacks and
heartbeats, which it publishes on :attr:`LauncherDriver.events` and hands
to listeners. It never decides to send a cue: the engagement authority and
the cue rules live in the cue path, which calls ``send_cue``.

Sequence numbers belong to the caller (the cue path journals them before
use, ICD §7.3): the driver sends the sequence it is given and refuses one
that is missing or not above the last it sent. Signing belongs to the codec
(:func:`drivers.launcher.codec_can.seal`): :meth:`LauncherDriver.seal` signs
without sending, so the cue path can journal the tag before the cue leaves
(one MAC per cue, docs/cue-path.md §3), and a sealed cue is then sent byte
for byte as sealed. The codec also verifies every
ack and heartbeat (ICD v2 §7.5); what fails is dropped and counted by reason
(``auth_*``) and handed to :meth:`LauncherDriver.add_rejection_listener`
listeners, so the cue path can audit it. A heartbeat that does not verify
is no heartbeat: the cue path's heartbeat timeout inhibits the launcher.

``accept_launcher_icd_v1 = true`` on the device lets an ICD v1 launcher's
untagged answers through (a WARNING at every start says so).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from drivers.base import Rejected, Role
from drivers.launcher import (
    AUTH_REASONS,
    Ack,
    Cue,
    CueCancel,
    LauncherCanCodec,
    LauncherSerialCodec,
    LauncherState,
    LauncherStatus,
)
from drivers.launcher.codec_can import seal as codec_seal
from gateway.bus import Topic
from gateway.config import DeviceConfig
from gateway.devices.base import DeviceDriver, DriverContext, RawFrame
from gateway.devices.can_radar import pack_raw_frames
from gateway.transports import StreamTransport, create_transport
from gateway.transports.base import Transport
from gateway.transports.can import FrameTransport
from hilgw.errors import LocalProtocolError, TransportError
from hilgw.keys import resolve_keys
from hilgw.v1 import health_pb2

__all__ = ["LauncherDriver", "LauncherIn"]

log = logging.getLogger(__name__)

_STATE_FROM_STATUS: dict[int, int] = {
    LauncherState.READY: health_pb2.DEVICE_STATE_UP,
    LauncherState.NOT_READY: health_pb2.DEVICE_STATE_DEGRADED,
    LauncherState.FAULT: health_pb2.DEVICE_STATE_DEGRADED,
}


@dataclass(frozen=True, slots=True)
class LauncherIn:
    """An ack/nack or heartbeat from a launcher, as published on the bus."""

    device_id: str
    receive_time_ns: int
    event: Ack | LauncherStatus


class LauncherDriver(DeviceDriver):
    """One launcher link. ``events`` is the topic acks and heartbeats go to."""

    def __init__(
        self, config: DeviceConfig, ctx: DriverContext, events: Topic[LauncherIn] | None = None
    ) -> None:
        super().__init__(config, ctx)
        self.events: Topic[LauncherIn] = events or Topic(f"launcher:{config.id}")
        self._listeners: list[Callable[[LauncherIn], None]] = []
        self._keys = resolve_keys(config.cue_keys, f"devices[{config.id}].cue_keys")
        self._rejection_listeners: list[Callable[[str, Rejected], None]] = []
        self.last_sequence = 0  # of the last cue or cancel sent (a check, not a counter)
        self._transport: Transport | None = None
        self._can: LauncherCanCodec | None = None
        self._serial: LauncherSerialCodec | None = None
        self._send_lock = asyncio.Lock()
        self._up = asyncio.Event()
        self._seen: Counter[str] = Counter()

    def add_listener(self, callback: Callable[[LauncherIn], None]) -> None:
        """Call ``callback`` (synchronously, in the driver task) for every ack and heartbeat."""
        self._listeners.append(callback)

    def add_rejection_listener(self, callback: Callable[[str, Rejected], None]) -> None:
        """Call ``callback(device_id, rejected)`` for every ack or heartbeat that fails
        verification (reasons ``auth_*``, ICD v2 §7.5), after it is counted."""
        self._rejection_listeners.append(callback)

    @property
    def connected(self) -> bool:
        """True while the link is open (cues can be sent)."""
        return self._transport is not None

    async def wait_connected(self) -> None:
        """Wait until the link is open."""
        await self._up.wait()

    # --- sending -------------------------------------------------------------------

    def _prepare(self, event: Cue | CueCancel) -> Cue | CueCancel:
        if event.sequence is None or event.sequence <= self.last_sequence:
            raise LocalProtocolError(
                f"{self.config.id}: {type(event).__name__} sequence {event.sequence} is not above "
                f"the last sent ({self.last_sequence}); the cue path numbers them (ICD §7.3)",
                field="sequence",
                value=event.sequence,
            )
        if self.config.launcher_id is not None and event.launcher_id != self.config.launcher_id:
            raise LocalProtocolError(
                f"{self.config.id}: {type(event).__name__} for launcher {event.launcher_id}, "
                f"this link is launcher {self.config.launcher_id}",
                field="launcher_id",
                value=event.launcher_id,
            )
        if event.key_id == 0:
            return dataclasses.replace(event, key_id=self.config.cue_key_id)
        return event

    def seal(self, event: Cue | CueCancel) -> Cue | CueCancel:
        """``event`` as this link sends it: checked (launcher id), the device's
        ``cue_key_id`` filled in, signed by the codec's signer over the ICD's
        canonical bytes (§7.1; the same tag on CAN FD and serial). Pure: no I/O,
        works while the link is down. Raises :class:`LocalProtocolError` for a
        cue this link cannot carry."""
        out = codec_seal(Role.GATEWAY, self._prepare(event), self._keys, None, 2)
        assert isinstance(out, Cue | CueCancel)
        return out

    async def send_cue(self, cue: Cue) -> Cue:
        """Send a cue, signed first unless it is already sealed (:meth:`seal`);
        returns it as sent (key id and MAC filled in).

        Raises :class:`TransportError` when the link is down (the caller keeps
        the cue withheld) and :class:`LocalProtocolError` for a cue this link
        cannot carry (no sequence, no key for its key id, wrong launcher id, ...).
        """
        sent = await self._send(cue)
        assert isinstance(sent, Cue)
        return sent

    async def send_cancel(self, cancel: CueCancel) -> CueCancel:
        """Send a cue cancel (signed first unless already sealed); returns it as sent."""
        sent = await self._send(cancel)
        assert isinstance(sent, CueCancel)
        return sent

    async def _send(self, event: Cue | CueCancel) -> Cue | CueCancel:
        async with self._send_lock:
            transport = self._transport
            if transport is None:
                raise TransportError(f"{self.config.id}: launcher link is down")
            stats = self.ctx.stats
            # A sealed event goes as it is: its tag is the one the cue path journaled.
            prepared = self._prepare(event) if event.mac else self.seal(event)
            if isinstance(transport, FrameTransport):
                assert self._can is not None
                frames = self._can.send(prepared)
                await transport.send_many(frames)
                stats.frames_out += len(frames)
                stats.bytes_out += sum(len(f.data) for f in frames)
            elif isinstance(transport, StreamTransport):
                assert self._serial is not None
                data = self._serial.send(prepared)
                await transport.write(data)
                stats.frames_out += 1
                stats.bytes_out += len(data)
            else:  # pragma: no cover - run() only opens these two kinds
                raise TransportError(f"{self.config.id}: a launcher needs a CAN or a stream transport")
            assert prepared.sequence is not None
            self.last_sequence = prepared.sequence
            return prepared

    # --- receiving -----------------------------------------------------------------

    async def run(self) -> None:
        transport = create_transport(self.config.transport)
        stats = self.ctx.stats
        lid = self.config.launcher_id
        accept_v1 = self.config.accept_launcher_icd_v1
        max_age = int(self.config.reply_max_age_s * 1e9)
        if accept_v1:
            log.warning(
                "%s: accept_launcher_icd_v1 = true: acks and heartbeats without a MAC (ICD v1) are accepted "
                "from this launcher; a forged heartbeat can hide its loss (docs/icd/launcher.md §7.6)",
                self.config.id,
            )
        async with transport:
            stats.set_state(health_pb2.DEVICE_STATE_STARTING, f"open: {transport.describe}")
            self._seen = Counter()
            try:
                if isinstance(transport, FrameTransport):
                    self._can = LauncherCanCodec(
                        Role.GATEWAY,
                        launcher_id=lid,
                        keys=self._keys,
                        id_offset=self.config.can_id_offset,
                        max_reply_age_ns=max_age,
                        accept_v1=accept_v1,
                    )
                    self._transport = transport
                    self._up.set()
                    while True:
                        frames = await transport.recv_batch()
                        t_rx = self.ctx.wall_ns()
                        stats.frames_in += len(frames)
                        stats.bytes_in += sum(len(f.data) for f in frames)
                        self.ctx.raw.publish(RawFrame(self.config.id, "can", t_rx, pack_raw_frames(frames)))
                        self._sync_counters(transport)
                        # An answer's age (ICD §7.5, reply_max_age_s) is judged against
                        # the time its frame was received, stamped per frame by the
                        # transport's reader thread, not against t_rx, the time this
                        # task got round to the batch: under load the loop can be late
                        # by more than the limit and fresh heartbeats would be refused
                        # as auth_stale. A frame without a stamp is judged at t_rx.
                        stamped = [f if f.timestamp_ns else f._replace(timestamp_ns=t_rx) for f in frames]
                        for event in self._can.receive_frames(stamped):
                            self._handle(event, t_rx)
                elif isinstance(transport, StreamTransport):
                    self._serial = LauncherSerialCodec(
                        Role.GATEWAY,
                        launcher_id=lid,
                        keys=self._keys,
                        max_reply_age_ns=max_age,
                        accept_v1=accept_v1,
                    )
                    self._transport = transport
                    self._up.set()
                    while True:
                        data = await transport.read()
                        t_rx = self.ctx.wall_ns()
                        stats.bytes_in += len(data)
                        self.ctx.raw.publish(RawFrame(self.config.id, "serial", t_rx, data))
                        self._serial.receive_data(data, t_rx)
                        for event in self._serial.drain():
                            stats.frames_in += 1
                            self._handle(event, t_rx)
                else:
                    raise TransportError(f"{self.config.id}: a launcher needs a CAN or a stream transport")
            finally:
                self._transport = None
                self._up.clear()

    def _handle(self, event: object, t_rx: int) -> None:
        stats = self.ctx.stats
        if isinstance(event, Ack | LauncherStatus):
            stats.last_frame_time_ns = t_rx
            stats.last_frame_mono = self.ctx.mono()
            if isinstance(event, LauncherStatus):
                stats.device_time_ns = event.launcher_time_ns
                state = _STATE_FROM_STATUS.get(int(event.state), int(health_pb2.DEVICE_STATE_DEGRADED))
                detail = f"launcher {event.state.name}"
                if event.fault_code:
                    detail += f", fault code {event.fault_code}"
                stats.set_state(state, detail)
            elif stats.state in (health_pb2.DEVICE_STATE_STARTING, health_pb2.DEVICE_STATE_DOWN):
                stats.set_state(health_pb2.DEVICE_STATE_UP, "receiving")
            item = LauncherIn(self.config.id, t_rx, event)
            self.events.publish(item)
            for callback in self._listeners:
                callback(item)
        elif isinstance(event, Rejected):
            stats.reject(event.reason)
            stats.last_error = str(event.error)
            self.drop_log.drop(event.reason, event.error)
            if event.reason in AUTH_REASONS:
                for rejected_cb in self._rejection_listeners:
                    rejected_cb(self.config.id, event)

    def _sync_counters(self, transport: FrameTransport) -> None:
        counters = transport.counters
        for key in ("error_frame", "bus_off", "queue_full", "kernel_overflow"):
            delta = counters[key] - self._seen[key]
            if delta > 0:
                self.ctx.stats.drop(f"can_{key}" if key in ("error_frame", "bus_off") else key, delta)
                self._seen[key] = counters[key]

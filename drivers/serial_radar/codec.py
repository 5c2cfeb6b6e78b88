"""The serial radar codec: one sans-I/O class for both ends of the link (h11 style).

* ``Role.DEVICE`` (the radar front-end or its emulator): :meth:`send` one
  event, or :meth:`encode_track_batch` many track reports at once, to bytes.
* ``Role.GATEWAY`` (hilgw's driver): :meth:`receive_data` bytes from the
  port, then either :meth:`next_event` one at a time (``NEED_DATA`` when
  empty) or :meth:`drain` everything buffered at once, with runs of track
  reports coalesced into :class:`TrackReportBatch` (the hot path).

ICD v1 is simplex (device → gateway): the gateway sends nothing and the device
receives nothing; asking for either raises :class:`LocalProtocolError`.
Nothing here reads a port or a clock.
"""

from __future__ import annotations

from collections import deque
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from drivers.base import NEED_DATA, U16_MAX, Rejected, Role, _NeedData
from drivers.framing import Deframer, encode_frame
from drivers.radar import Status, TrackReportBatch
from drivers.serial_radar.batch import decode_track_payloads, encode_track_payloads
from drivers.serial_radar.events import TrackReport
from drivers.serial_radar.icd import (
    DEFAULT_MAX_PAYLOAD,
    PROTOCOL_VERSION,
    SEQUENCE_MODULUS,
    TRACK_REPORT_SIZE,
    MessageType,
)
from drivers.serial_radar.messages import decode_payload, encode_status, encode_track_report, label
from hilgw.errors import LocalProtocolError

__all__ = ["SerialRadarCodec", "SerialRadarEvent"]

#: What :meth:`SerialRadarCodec.next_event` and :meth:`SerialRadarCodec.drain` hand out.
SerialRadarEvent: TypeAlias = TrackReport | Status | TrackReportBatch | Rejected

_TRACK_TYPE = int(MessageType.TRACK_REPORT)


class SerialRadarCodec:
    """Sans-I/O codec of the serial radar ICD (docs/icd/serial-radar.md).

    ``sensor_id`` is required for the device role (it goes in every header).
    On the gateway it is optional: when given, frames from another sensor id
    are rejected (reason ``sensor_id``). ``max_frame`` is the largest payload
    (header + body, before CRC and COBS) the deframer accepts (ICD §3.3).
    ``first_sequence`` is the sequence number of the first frame sent (device
    role; e.g. to resume a recorded stream).
    """

    __slots__ = ("_closed", "_deframer", "_next_sequence", "_pending", "_role", "_sensor_id")

    def __init__(
        self,
        role: Role,
        sensor_id: int | None = None,
        max_frame: int = DEFAULT_MAX_PAYLOAD,
        *,
        first_sequence: int = 0,
    ) -> None:
        if not isinstance(role, Role):
            raise LocalProtocolError(f"role {role!r} is not a Role", field="role", value=role)
        if sensor_id is None and role is Role.DEVICE:
            raise LocalProtocolError("the device role needs a sensor_id", field="sensor_id")
        if sensor_id is not None and (
            isinstance(sensor_id, bool) or not isinstance(sensor_id, int) or not 0 <= sensor_id <= U16_MAX
        ):
            raise LocalProtocolError(
                f"sensor_id {sensor_id!r} outside [0, {U16_MAX}]", field="sensor_id", value=sensor_id
            )
        if max_frame < TRACK_REPORT_SIZE:
            raise LocalProtocolError(
                f"max_frame {max_frame} is smaller than the largest message ({TRACK_REPORT_SIZE} bytes)",
                field="max_frame",
                value=max_frame,
            )
        if isinstance(first_sequence, bool) or not 0 <= first_sequence < SEQUENCE_MODULUS:
            raise LocalProtocolError(
                f"first_sequence {first_sequence!r} outside [0, 2^32)",
                field="first_sequence",
                value=first_sequence,
            )
        self._role = role
        self._sensor_id = sensor_id
        self._deframer = Deframer(max_frame, label=label(sensor_id))
        self._pending: deque[bytes | Rejected] = deque()
        self._next_sequence = first_sequence
        self._closed = False

    @property
    def role(self) -> Role:
        """Which end of the link this codec serves."""
        return self._role

    @property
    def sensor_id(self) -> int | None:
        """The sensor id written (device) or expected (gateway, if set)."""
        return self._sensor_id

    @property
    def next_sequence(self) -> int:
        """Sequence number the next sent frame will carry (device role)."""
        return self._next_sequence

    @property
    def closed(self) -> bool:
        """True once :meth:`receive_data` got ``b""`` (end of stream)."""
        return self._closed

    # -- device side -------------------------------------------------------

    def send(self, event: TrackReport | Status) -> bytes:
        """Encode one event as a complete frame (device role). Raises LocalProtocolError."""
        sensor_id = self._sending_sensor_id()
        if event.sensor_id is not None and event.sensor_id != sensor_id:
            raise LocalProtocolError(
                f"{label(sensor_id)}: event sensor_id {event.sensor_id} is not this codec's",
                field="sensor_id",
                value=event.sensor_id,
            )
        seq = self._next_sequence
        if isinstance(event, TrackReport):
            payload = encode_track_report(event, sensor_id, seq)
        elif isinstance(event, Status):
            payload = encode_status(event, sensor_id, seq)
        else:
            raise LocalProtocolError(f"{label(sensor_id)}: cannot send {type(event).__name__}", value=event)
        self._next_sequence = (seq + 1) % SEQUENCE_MODULUS
        return encode_frame(payload)

    def encode_track_batch(self, reports: npt.NDArray[np.void]) -> bytes:
        """Encode every row of a ``TRACK_BATCH_DTYPE`` array as one TRACK_REPORT frame each (device role).

        Validation and quantisation are vectorised; the result is byte-for-byte
        what calling :meth:`send` per row would give. The ``sequence`` column is
        ignored: the codec numbers the frames. Raises LocalProtocolError naming
        the first bad row and nothing is sent (the sequence does not advance).
        """
        sensor_id = self._sending_sensor_id()
        wire = encode_track_payloads(reports, sensor_id, self._next_sequence)
        self._next_sequence = (self._next_sequence + len(wire)) % SEQUENCE_MODULUS
        raw = wire.tobytes()
        return b"".join(
            [encode_frame(raw[i : i + TRACK_REPORT_SIZE]) for i in range(0, len(raw), TRACK_REPORT_SIZE)]
        )

    def _sending_sensor_id(self) -> int:
        if self._role is not Role.DEVICE or self._sensor_id is None:
            raise LocalProtocolError(
                f"{label(self._sensor_id)}: the {self._role.value} role sends nothing in ICD v1"
                " (the link is device → gateway)",
                field="role",
            )
        return self._sensor_id

    # -- gateway side ------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the link (gateway role). ``b""`` means end of stream.

        At end of stream a partial frame still buffered becomes a ``truncated``
        Rejected, so nothing is lost silently.
        """
        self._require_gateway()
        if self._closed:
            raise LocalProtocolError(f"{label(self._sensor_id)}: receive_data after end of stream")
        if not data:
            self._closed = True
            self._pending.extend(self._deframer.close())
            return
        self._pending.extend(self._deframer.feed(data))

    def next_event(self) -> TrackReport | Status | Rejected | _NeedData:
        """The next event, or ``NEED_DATA`` (gateway role). Never raises for bad input."""
        self._require_gateway()
        if not self._pending:
            return NEED_DATA
        item = self._pending.popleft()
        if isinstance(item, Rejected):
            return item
        return decode_payload(item, self._sensor_id)

    def drain(self) -> list[SerialRadarEvent]:
        """Every complete event buffered, in order, with runs of track reports batched (gateway role).

        A run of consecutive valid-looking TRACK_REPORT frames from one sensor
        becomes one :class:`TrackReportBatch`; a bad row in a run becomes a
        Rejected in its place and splits the run. The content equals what
        repeated :meth:`next_event` calls would give.
        """
        self._require_gateway()
        items = list(self._pending)
        self._pending.clear()
        sensor_id = self._sensor_id
        events: list[SerialRadarEvent] = []
        run: list[bytes] = []
        for item in items:
            # Cheap header peek; everything else is checked vectorised in the batch.
            if (
                type(item) is bytes
                and len(item) == TRACK_REPORT_SIZE
                and item[1] == _TRACK_TYPE
                and item[0] == PROTOCOL_VERSION
            ):
                run.append(item)
                continue
            if run:
                events.extend(decode_track_payloads(run, sensor_id))
                run = []
            events.append(item if isinstance(item, Rejected) else decode_payload(item, sensor_id))
        if run:
            events.extend(decode_track_payloads(run, sensor_id))
        return events

    def _require_gateway(self) -> None:
        if self._role is not Role.GATEWAY:
            raise LocalProtocolError(
                f"{label(self._sensor_id)}: the device role receives nothing in ICD v1"
                " (the link is device → gateway)",
                field="role",
            )

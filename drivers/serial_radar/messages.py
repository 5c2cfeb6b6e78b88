"""Scalar (one message at a time) encode and decode of serial radar payloads.

A *payload* is what :mod:`drivers.framing` carries: the §4 header followed by
the message body, without CRC or COBS. Decoding never raises for bad input: it
returns a :class:`Rejected` whose message names the sensor, the message, the
field, its byte offset (from the start of the payload, as in the ICD tables)
and the value. The batch decoder (:mod:`drivers.serial_radar.batch`) uses
:func:`decode_payload` to word its rejections, so both paths say the same.
"""

from __future__ import annotations

from drivers.base import Rejected
from drivers.framing import RAW_LIMIT
from drivers.radar import SensorState, Status
from drivers.serial_radar.events import TrackReport
from drivers.serial_radar.icd import (
    HEADER,
    HEADER_SIZE,
    PAYLOAD_SIZE,
    PROTOCOL_VERSION,
    STATUS,
    STATUS_FLAG_RADIATING,
    STATUS_FLAG_TIME_LOCKED,
    STATUS_FLAGS_DEFINED,
    STATUS_FLAGS_OFFSET,
    STATUS_STATE_OFFSET,
    STATUS_TIME_OFFSET,
    TRACK_FLAG_COASTING,
    TRACK_FLAG_RATES_VALID,
    TRACK_FLAGS_DEFINED,
    TRACK_FLAGS_OFFSET,
    TRACK_REPORT,
    TRACK_SCALED,
    TRACK_TIME_OFFSET,
    MessageType,
)
from hilgw.errors import RemoteProtocolError

__all__ = ["decode_payload", "encode_status", "encode_track_report", "label"]

_TRACK_TYPE = int(MessageType.TRACK_REPORT)
_STATUS_TYPE = int(MessageType.STATUS)


def label(sensor_id: int | None) -> str:
    """Prefix of every message about this sensor's stream."""
    return "serial radar" if sensor_id is None else f"serial radar {sensor_id}"


def encode_track_report(event: TrackReport, sensor_id: int, sequence: int) -> bytes:
    """Payload of one TRACK_REPORT (ICD §5.1); the event is already validated and quantised."""
    flags = (TRACK_FLAG_RATES_VALID if event.rates_valid else 0) | (
        TRACK_FLAG_COASTING if event.coasting else 0
    )
    return TRACK_REPORT.pack(
        PROTOCOL_VERSION,
        _TRACK_TYPE,
        sensor_id,
        sequence,
        event.sensor_time_ns,
        event.sensor_track_id,
        *event.wire,
        flags,
    )


def encode_status(event: Status, sensor_id: int, sequence: int) -> bytes:
    """Payload of one STATUS (ICD §5.2)."""
    flags = (STATUS_FLAG_TIME_LOCKED if event.time_sync_locked else 0) | (
        STATUS_FLAG_RADIATING if event.radiating else 0
    )
    return STATUS.pack(
        PROTOCOL_VERSION,
        _STATUS_TYPE,
        sensor_id,
        sequence,
        event.sensor_time_ns,
        event.uptime_s,
        event.fault_code,
        event.track_count,
        int(event.state),
        flags,
    )


def _reject(
    payload: bytes,
    text: str,
    reason: str,
    *,
    field: str | None = None,
    offset: int | None = None,
    value: object,
) -> Rejected:
    err = RemoteProtocolError(text, reason=reason, field=field, offset=offset, value=value)
    return Rejected(err, payload[:RAW_LIMIT])


def decode_payload(payload: bytes, expected_sensor_id: int | None = None) -> TrackReport | Status | Rejected:
    """Decode one CRC-checked payload into an event, or a :class:`Rejected` naming the problem.

    Reasons (ICD §6.2): ``length`` (shorter than the header, or wrong size for
    the type), ``version``, ``unknown_type``, ``sensor_id`` (not the configured
    sensor), ``range`` (a field outside its valid range, reserved bits set).
    """
    n = len(payload)
    if n < HEADER_SIZE:
        return _reject(
            payload,
            f"{label(expected_sensor_id)}: payload of {n} bytes is shorter than"
            f" the {HEADER_SIZE}-byte header",
            "length",
            value=n,
        )
    version, msg_type, sensor_id, sequence = HEADER.unpack_from(payload)
    who = label(sensor_id)
    if version != PROTOCOL_VERSION:
        return _reject(
            payload,
            f"{who}: protocol version {version} at byte 0, expected {PROTOCOL_VERSION}",
            "version",
            field="version",
            offset=0,
            value=version,
        )
    if msg_type == _TRACK_TYPE:
        name = "TRACK_REPORT"
    elif msg_type == _STATUS_TYPE:
        name = "STATUS"
    else:
        return _reject(
            payload,
            f"{who}: unknown message type 0x{msg_type:02X} at byte 1",
            "unknown_type",
            field="msg_type",
            offset=1,
            value=msg_type,
        )
    want = PAYLOAD_SIZE[MessageType(msg_type)]
    if n != want:
        return _reject(
            payload,
            f"{who}: {name} payload of {n} bytes, expected {want}",
            "length",
            field="length",
            value=n,
        )
    if expected_sensor_id is not None and sensor_id != expected_sensor_id:
        return _reject(
            payload,
            f"{who}: sensor_id at byte 2 = {sensor_id}, this stream is sensor {expected_sensor_id}",
            "sensor_id",
            field="sensor_id",
            offset=2,
            value=sensor_id,
        )
    if msg_type == _TRACK_TYPE:
        return _decode_track(payload, sensor_id, sequence, who)
    return _decode_status(payload, sensor_id, sequence, who)


def _decode_track(payload: bytes, sensor_id: int, sequence: int, who: str) -> TrackReport | Rejected:
    fields = TRACK_REPORT.unpack(payload)
    time_ns, track_id = fields[4], fields[5]
    raws = fields[6:-1]
    flags = fields[-1]
    if time_ns < 0:
        return _reject(
            payload,
            f"{who}: TRACK_REPORT sensor_time_ns at byte {TRACK_TIME_OFFSET} = {time_ns} is negative",
            "range",
            field="sensor_time_ns",
            offset=TRACK_TIME_OFFSET,
            value=time_ns,
        )
    if flags & ~TRACK_FLAGS_DEFINED:
        return _reject(
            payload,
            f"{who}: TRACK_REPORT flags at byte {TRACK_FLAGS_OFFSET} = 0x{flags:02X} has reserved bits set",
            "range",
            field="flags",
            offset=TRACK_FLAGS_OFFSET,
            value=flags,
        )
    rates_valid = bool(flags & TRACK_FLAG_RATES_VALID)
    values: dict[str, float] = {}
    for spec, raw in zip(TRACK_SCALED, raws, strict=True):
        value = raw * spec.lsb
        if spec.rate and not rates_valid:
            if raw != 0:
                return _reject(
                    payload,
                    f"{who}: TRACK_REPORT {spec.wire} at byte {spec.offset} = {value:.9g} {spec.unit} "
                    f"(raw {raw}) must be 0 when rates_valid is clear",
                    "range",
                    field=spec.wire,
                    offset=spec.offset,
                    value=value,
                )
        elif not spec.lo <= raw <= spec.hi:
            return _reject(
                payload,
                f"{who}: TRACK_REPORT {spec.wire} at byte {spec.offset} = {value:.9g} {spec.unit} "
                f"(raw {raw}) outside [{spec.lo * spec.lsb:.9g}, {spec.hi * spec.lsb:.9g}] {spec.unit}",
                "range",
                field=spec.wire,
                offset=spec.offset,
                value=value,
            )
        values[spec.attr] = value
    return TrackReport(
        sensor_track_id=track_id,
        sensor_time_ns=time_ns,
        rates_valid=rates_valid,
        coasting=bool(flags & TRACK_FLAG_COASTING),
        sensor_id=sensor_id,
        sequence=sequence,
        **values,
    )


def _decode_status(payload: bytes, sensor_id: int, sequence: int, who: str) -> Status | Rejected:
    _v, _t, _s, _q, time_ns, uptime_s, fault_code, track_count, state, flags = STATUS.unpack(payload)
    if time_ns < 0:
        return _reject(
            payload,
            f"{who}: STATUS sensor_time_ns at byte {STATUS_TIME_OFFSET} = {time_ns} is negative",
            "range",
            field="sensor_time_ns",
            offset=STATUS_TIME_OFFSET,
            value=time_ns,
        )
    if state not in SensorState._value2member_map_:
        return _reject(
            payload,
            f"{who}: STATUS state at byte {STATUS_STATE_OFFSET} = {state} is not a known state (0..3)",
            "range",
            field="state",
            offset=STATUS_STATE_OFFSET,
            value=state,
        )
    if flags & ~STATUS_FLAGS_DEFINED:
        return _reject(
            payload,
            f"{who}: STATUS flags at byte {STATUS_FLAGS_OFFSET} = 0x{flags:02X} has reserved bits set",
            "range",
            field="flags",
            offset=STATUS_FLAGS_OFFSET,
            value=flags,
        )
    return Status(
        sensor_time_ns=time_ns,
        state=SensorState(state),
        time_sync_locked=bool(flags & STATUS_FLAG_TIME_LOCKED),
        radiating=bool(flags & STATUS_FLAG_RADIATING),
        track_count=track_count,
        uptime_s=uptime_s,
        fault_code=fault_code,
        sensor_id=sensor_id,
        sequence=sequence,
    )

"""DIS (IEEE 1278.1-2012, version 7) Entity State PDU: event and sans-I/O codec.

Hand-written with ``struct`` on purpose: the one PyPI DIS package (opendis)
pins numpy < 2 (hilgw runs numpy 2) and mis-encodes fields we depend on:
it writes pduType and protocolFamily as 0, does not compute the length
field, and has non-integer defaults for integer fields. The ESPDU is a fixed
144-byte layout plus 16-byte variable parameter records, so one compiled
``struct.Struct`` (docs/icd/dis.md, byte table) is the whole wire format.

All multi-byte fields are big-endian (IEEE 1278.1-2012 §5.2, network byte order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from struct import Struct

from drivers.base import Rejected, Role
from hilgw.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_VERSION = 7  # IEEE 1278.1-2012
ACCEPTED_VERSIONS = (6, 7)  # 6 = IEEE 1278.1a-1998: same ESPDU layout, header octet 10 is padding
PDU_TYPE_ENTITY_STATE = 1
FAMILY_ENTITY_INFORMATION = 1
HEADER = Struct(">BBBBIHBB")  # version, exercise, type, family, timestamp, length, status, padding
HEADER_LEN = HEADER.size  # 12
#: The fixed part of the ESPDU after the header (docs/icd/dis.md, octets 12..143).
BODY = Struct(
    ">HHH"  # entity ID: site, application, entity
    "BB"  # force ID, number of variable parameter records
    "BBHBBBB"  # entity type: kind, domain, country, category, subcategory, specific, extra
    "BBHBBBB"  # alternative entity type
    "3f"  # linear velocity (world, m/s)
    "3d"  # location (world = ECEF, m)
    "3f"  # orientation psi, theta, phi (rad)
    "I"  # appearance
    "B15s"  # dead reckoning algorithm, other parameters
    "3f3f"  # dead reckoning linear acceleration, angular velocity
    "B11s"  # entity marking: character set, 11 characters
    "I"  # capabilities
)
ESPDU_FIXED_LEN = HEADER_LEN + BODY.size  # 144
VP_RECORD_LEN = 16
#: DIS timestamp: bits 31..1 count units of 3600 / 2^31 s past the hour; bit 0 set = absolute.
TS_UNIT_S = 3600.0 / 2**31
HOUR_NS = 3_600_000_000_000
MAX_RAW = 512

EntityType = tuple[int, int, int, int, int, int, int]
Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class EntityState:
    """One Entity State PDU (IEEE 1278.1-2012 §7.2.2), SI units.

    ``location_m`` is ECEF (WGS-84) metres; ``velocity_mps`` world-frame m/s;
    ``orientation_rad`` the Euler angles (psi, theta, phi) of the entity body
    against ECEF (§1.3.2 of the standard's annex on coordinate systems).
    ``timestamp_raw`` is the header field as sent; ``timestamp_s`` the time
    past the hour it encodes; ``timestamp_absolute`` its LSB; ``t_ns`` the UTC
    time resolved with the receive time when the stamp is absolute (None for a
    relative stamp, or on an encoded event). ``variable_parameters`` are the raw
    16-byte records.
    """

    entity_id: tuple[int, int, int]
    force_id: int = 0
    entity_type: EntityType = (0, 0, 0, 0, 0, 0, 0)
    alt_entity_type: EntityType = (0, 0, 0, 0, 0, 0, 0)
    location_m: Vec3 = (0.0, 0.0, 0.0)
    velocity_mps: Vec3 = (0.0, 0.0, 0.0)
    orientation_rad: Vec3 = (0.0, 0.0, 0.0)
    appearance: int = 0
    #: None (encoding only): chosen from the motion by :func:`dead_reckoning_for`.
    dead_reckoning_algorithm: int | None = None
    dead_reckoning_other: bytes = bytes(15)
    dr_linear_acceleration_mps2: Vec3 = (0.0, 0.0, 0.0)
    dr_angular_velocity_radps: Vec3 = (0.0, 0.0, 0.0)
    marking: str = ""
    marking_charset: int = 1  # 1 = ASCII
    capabilities: int = 0
    exercise_id: int = 1
    timestamp_raw: int = 0
    variable_parameters: tuple[bytes, ...] = field(default_factory=tuple)
    protocol_version: int = PROTOCOL_VERSION
    pdu_status: int = 0
    t_ns: int | None = None

    @property
    def timestamp_s(self) -> float:
        """Seconds past the hour encoded in ``timestamp_raw``."""
        return (self.timestamp_raw >> 1) * TS_UNIT_S

    @property
    def timestamp_absolute(self) -> bool:
        return bool(self.timestamp_raw & 1)


#: Dead-reckoning algorithms, IEEE 1278.1-2012 Annex E (Table E.1): 1 Static,
#: 2 DRM(F,P,W) constant velocity, 4 DRM(R,V,W) constant acceleration and rotation.
DRM_STATIC, DRM_FPW, DRM_RVW = 1, 2, 4


def dead_reckoning_for(ev: EntityState) -> int:
    """The algorithm an ESPDU should carry for its motion (IEEE 1278.1 Annex E).

    An explicit ``dead_reckoning_algorithm`` wins. Otherwise: RVW when an
    acceleration or angular velocity is given (a receiver extrapolating with
    FPW would drop them), FPW for a moving entity, Static only for one whose
    velocity is zero too (a receiver does not move a Static entity at all).
    """
    if ev.dead_reckoning_algorithm is not None:
        return ev.dead_reckoning_algorithm
    if any(ev.dr_linear_acceleration_mps2) or any(ev.dr_angular_velocity_radps):
        return DRM_RVW
    if any(ev.velocity_mps):
        return DRM_FPW
    return DRM_STATIC


def timestamp_raw(t_ns: int, absolute: bool = True) -> int:
    """DIS timestamp of a UTC ns time (absolute: past the UTC hour)."""
    units = round((t_ns % HOUR_NS) * 1e-9 / TS_UNIT_S) % 2**31
    return (units << 1) | (1 if absolute else 0)


def resolve_timestamp(raw: int, t_rx_ns: int) -> int:
    """UTC ns of an absolute DIS timestamp: the hour that puts it nearest the receive time."""
    past_ns = round((raw >> 1) * TS_UNIT_S * 1e9)
    t = t_rx_ns - t_rx_ns % HOUR_NS + past_ns
    d = t - t_rx_ns
    if d > HOUR_NS // 2:
        t -= HOUR_NS
    elif d < -HOUR_NS // 2:
        t += HOUR_NS
    return t


def _check_uint(name: str, v: int, bits: int) -> None:
    if not 0 <= v < (1 << bits):
        raise LocalProtocolError(f"{name}={v} does not fit in {bits} bits", field=name, value=v)


class DisCodec:
    """Sans-I/O DIS codec for Entity State PDUs, one datagram at a time.

    DIS is peer to peer: every simulation node both sends and receives
    ESPDUs, so both roles may ``send`` and ``receive_datagram``; the role
    only names which end this instance serves. A datagram may bundle several
    PDUs back to back (IEEE 1278.1-2012 §5.3.1.3); each is delimited by its
    length field. PDU types other than Entity State come back as Rejected
    with reason ``unsupported_pdu``: the driver counts them like any drop but
    should not log them as errors (they are ordinary traffic on a DIS network).
    """

    def __init__(self, role: Role, *, source: str = "dis") -> None:
        self.role = role
        self.source = source

    def _reject(self, reason: str, msg: str, fld: str, off: int, value: object, raw: bytes) -> Rejected:
        err = RemoteProtocolError(
            f"{self.source}: PDU at byte {off}: {msg}", reason=reason, field=fld, offset=off, value=value
        )
        return Rejected(err, raw[:MAX_RAW])

    def receive_datagram(self, data: bytes, t_ns: int) -> list[EntityState | Rejected]:
        """Decode every PDU of one UDP payload; ``t_ns`` is the UTC receive time."""
        buf = bytes(data)
        n = len(buf)
        out: list[EntityState | Rejected] = []
        off = 0
        while off < n:
            if n - off < HEADER_LEN:
                out.append(
                    self._reject("truncated", "PDU header cut short", "header", off, n - off, buf[off:])
                )
                break
            version, exercise, ptype, family, ts, length, status, _pad = HEADER.unpack_from(buf, off)
            if length < HEADER_LEN:
                out.append(
                    self._reject(
                        "length", f"length {length} below the header", "length", off, length, buf[off:]
                    )
                )
                break  # cannot find the next PDU
            if off + length > n:
                msg = f"length {length} with {n - off} bytes left in the datagram"
                out.append(self._reject("truncated", msg, "length", off, length, buf[off:]))
                break
            pdu = buf[off : off + length]
            out.append(self._decode_pdu(pdu, off, version, exercise, ptype, family, ts, status, t_ns))
            off += length
        return out

    def _decode_pdu(
        self,
        pdu: bytes,
        off: int,
        version: int,
        exercise: int,
        ptype: int,
        family: int,
        ts: int,
        status: int,
        t_rx: int,
    ) -> EntityState | Rejected:
        if version not in ACCEPTED_VERSIONS:
            return self._reject(
                "version", f"protocol version {version}", "protocol_version", off, version, pdu
            )
        if ptype != PDU_TYPE_ENTITY_STATE:
            return self._reject("unsupported_pdu", f"PDU type {ptype}", "pdu_type", off, ptype, pdu)
        if family != FAMILY_ENTITY_INFORMATION:
            return self._reject(
                "decode", f"ESPDU with protocol family {family}", "protocol_family", off, family, pdu
            )
        if len(pdu) < ESPDU_FIXED_LEN:
            return self._reject(
                "length", f"ESPDU length {len(pdu)} < {ESPDU_FIXED_LEN}", "length", off, len(pdu), pdu
            )
        v = BODY.unpack_from(pdu, HEADER_LEN)
        n_vp = v[4]
        if len(pdu) != ESPDU_FIXED_LEN + VP_RECORD_LEN * n_vp:
            msg = f"length {len(pdu)} does not match {n_vp} variable parameter records"
            return self._reject("length", msg, "length", off, len(pdu), pdu)
        floats = v[19:28] + v[31:37]
        if not all(math.isfinite(x) for x in floats):
            return self._reject(
                "decode", "non-finite velocity/location/orientation", "location", off, None, pdu
            )
        vps = tuple(
            pdu[ESPDU_FIXED_LEN + i * VP_RECORD_LEN : ESPDU_FIXED_LEN + (i + 1) * VP_RECORD_LEN]
            for i in range(n_vp)
        )
        return EntityState(
            entity_id=(v[0], v[1], v[2]),
            force_id=v[3],
            entity_type=v[5:12],
            alt_entity_type=v[12:19],
            velocity_mps=v[19:22],
            location_m=v[22:25],
            orientation_rad=v[25:28],
            appearance=v[28],
            dead_reckoning_algorithm=v[29],
            dead_reckoning_other=v[30],
            dr_linear_acceleration_mps2=v[31:34],
            dr_angular_velocity_radps=v[34:37],
            marking_charset=v[37],
            marking=v[38].split(b"\0", 1)[0].decode("ascii", errors="replace"),
            capabilities=v[39],
            exercise_id=exercise,
            timestamp_raw=ts,
            variable_parameters=vps,
            protocol_version=version,
            pdu_status=status,
            t_ns=resolve_timestamp(ts, t_rx) if ts & 1 else None,
        )

    def send(self, ev: EntityState) -> bytes:
        """Encode one ESPDU; the length field is computed. LocalProtocolError on bad values."""
        if not isinstance(ev, EntityState):
            raise LocalProtocolError(f"cannot encode {type(ev).__name__} as DIS", value=ev)
        for name, val, bits in (
            ("exercise_id", ev.exercise_id, 8),
            ("force_id", ev.force_id, 8),
            ("appearance", ev.appearance, 32),
            ("capabilities", ev.capabilities, 32),
            ("timestamp_raw", ev.timestamp_raw, 32),
            ("dead_reckoning_algorithm", dead_reckoning_for(ev), 8),
            ("marking_charset", ev.marking_charset, 8),
            ("pdu_status", ev.pdu_status, 8),
        ):
            _check_uint(name, val, bits)
        for i, x in enumerate(ev.entity_id):
            _check_uint(f"entity_id[{i}]", x, 16)
        for name, et in (("entity_type", ev.entity_type), ("alt_entity_type", ev.alt_entity_type)):
            if len(et) != 7:
                raise LocalProtocolError(f"{name} needs 7 fields", field=name, value=et)
            for i, (x, bits) in enumerate(zip(et, (8, 8, 16, 8, 8, 8, 8), strict=True)):
                _check_uint(f"{name}[{i}]", x, bits)
        floats = (
            *ev.velocity_mps,
            *ev.location_m,
            *ev.orientation_rad,
            *ev.dr_linear_acceleration_mps2,
            *ev.dr_angular_velocity_radps,
        )
        if len(floats) != 15 or not all(math.isfinite(x) for x in floats):
            raise LocalProtocolError("vectors need 3 finite components", field="location_m", value=floats)
        if len(ev.dead_reckoning_other) != 15:
            raise LocalProtocolError("dead_reckoning_other is 15 bytes", field="dead_reckoning_other")
        try:
            marking = ev.marking.encode("ascii")
        except UnicodeEncodeError as exc:
            raise LocalProtocolError("marking must be ASCII", field="marking", value=ev.marking) from exc
        if len(marking) > 11:
            raise LocalProtocolError("marking is at most 11 characters", field="marking", value=ev.marking)
        vps = ev.variable_parameters
        if len(vps) > 255 or any(len(r) != VP_RECORD_LEN for r in vps):
            raise LocalProtocolError(
                "variable parameter records are 16 bytes, at most 255", field="variable_parameters"
            )
        length = ESPDU_FIXED_LEN + VP_RECORD_LEN * len(vps)
        if ev.protocol_version not in ACCEPTED_VERSIONS:
            raise LocalProtocolError("protocol_version must be 6 or 7", field="protocol_version")
        header = HEADER.pack(
            ev.protocol_version,
            ev.exercise_id,
            PDU_TYPE_ENTITY_STATE,
            FAMILY_ENTITY_INFORMATION,
            ev.timestamp_raw,
            length,
            ev.pdu_status,
            0,
        )
        body = BODY.pack(
            *ev.entity_id,
            ev.force_id,
            len(vps),
            *ev.entity_type,
            *ev.alt_entity_type,
            *ev.velocity_mps,
            *ev.location_m,
            *ev.orientation_rad,
            ev.appearance,
            dead_reckoning_for(ev),
            ev.dead_reckoning_other,
            *ev.dr_linear_acceleration_mps2,
            *ev.dr_angular_velocity_radps,
            ev.marking_charset,
            marking,  # struct pads "11s" with NULs
            ev.capabilities,
        )
        return header + body + b"".join(vps)

"""Message bodies of the launcher ICD (docs/icd/launcher.md §5), from the DBC.

The DBC (``launcher.dbc``) is the one layout of every message: the CAN FD
frames carry these bytes as their data, and the serial link carries the very
same bytes after a two-byte header (ICD §8). So the canonical bytes a MAC
covers are identical on both links (ICD §7).

Encoding takes an event and returns data bytes; decoding takes data bytes
and returns an event or raises :class:`RemoteProtocolError` (the codecs turn
that into a :class:`~drivers.base.Rejected`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from drivers.launcher.events import MAC_SIZE, REPLY_MAC_SIZE, Ack, Cue, CueCancel, LauncherStatus
from hilgw.can import MessageLayout, compile_message, load_packaged_dbc, stack_frames
from hilgw.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = [
    "ACK",
    "CANCEL",
    "CANCEL_SIGNED_SIZE",
    "CUE",
    "CUE_MAC",
    "DB",
    "DOMAIN_ACK",
    "DOMAIN_CANCEL",
    "DOMAIN_CUE",
    "DOMAIN_STATUS",
    "REPLY_SIGNED_SIZE",
    "STATUS",
    "compute_mac",
    "compute_reply_mac",
    "decode_ack",
    "decode_cancel",
    "decode_cue",
    "decode_cue_mac",
    "decode_status",
    "encode_ack",
    "encode_cancel",
    "encode_cue",
    "encode_cue_mac",
    "encode_status",
    "reply_key_id",
    "reply_signed_bytes",
]


#: The launcher database, ICD v2, loaded once (CAN FD only, ICD §3).
DB: Any = load_packaged_dbc("drivers.launcher", "launcher.dbc")
#: The v1 (unauthenticated) ack and heartbeat layouts, for launchers a config
#: explicitly accepts (ICD §7.6); nothing is ever sent in them.
DB_V1: Any = load_packaged_dbc("drivers.launcher", "launcher_v1.dbc")
_L: dict[str, MessageLayout] = {m.name: compile_message(m) for m in DB.messages}
CANCEL = _L["LAUNCHER_CUE_CANCEL"]
CUE = _L["LAUNCHER_CUE"]
CUE_MAC = _L["LAUNCHER_CUE_MAC"]
ACK = _L["LAUNCHER_ACK"]
STATUS = _L["LAUNCHER_STATUS"]
_L1: dict[str, MessageLayout] = {m.name: compile_message(m) for m in DB_V1.messages}
ACK_V1 = _L1["LAUNCHER_ACK"]
STATUS_V1 = _L1["LAUNCHER_STATUS"]

#: Domain-separation prefixes of the MAC input (ICD §7): a tag made for one
#: message kind never verifies as another.
DOMAIN_CUE = b"hilgw.launcher.v1.cue\x00"
DOMAIN_CANCEL = b"hilgw.launcher.v1.cancel\x00"
#: ICD v2 (§7.5): the launcher's answers are signed too, each kind in its own domain.
DOMAIN_ACK = b"hilgw.launcher.v2.ack\x00"
DOMAIN_STATUS = b"hilgw.launcher.v2.status\x00"
_MAC_WORDS = ("Mac0", "Mac1", "Mac2", "Mac3")
#: An ack's or heartbeat's signed bytes end where its tag begins (both: 32).
REPLY_SIGNED_SIZE = ACK.signals["Mac0"].start // 8
assert REPLY_SIGNED_SIZE == STATUS.signals["Mac0"].start // 8 == ACK.length - REPLY_MAC_SIZE
#: The cancel's signed bytes end where its tag begins (start bit of Mac0).
CANCEL_SIGNED_SIZE = CANCEL.signals["Mac0"].start // 8
_MS = 1_000_000


def compute_mac(key: bytes, domain: bytes, signed: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104, FIPS 198-1) of ``domain || signed`` under ``key``."""
    return hmac.new(key, domain + signed, hashlib.sha256).digest()


def compute_reply_mac(key: bytes, domain: bytes, signed: bytes) -> bytes:
    """The ICD v2 tag of an ack or heartbeat: HMAC-SHA256 of ``domain || signed``
    truncated to its first 128 bits (RFC 2104 §5, NIST SP 800-107 §5.3.3)."""
    return hmac.new(key, domain + signed, hashlib.sha256).digest()[:REPLY_MAC_SIZE]


def _mac_columns(mac: bytes) -> dict[str, int]:
    if len(mac) != MAC_SIZE:
        raise LocalProtocolError(f"MAC of {len(mac)} bytes, expected {MAC_SIZE}", field="mac")
    return {w: int.from_bytes(mac[8 * i : 8 * i + 8], "little") for i, w in enumerate(_MAC_WORDS)}


def _mac_of(raw: Mapping[str, int]) -> bytes:
    return b"".join(int(raw[w]).to_bytes(8, "little") for w in _MAC_WORDS)


def _encode(layout: MessageLayout, columns: Mapping[str, int]) -> bytes:
    for name, value in columns.items():
        sig = layout.signals[name]
        lo = sig.raw_min if sig.raw_min is not None else 0
        hi = sig.raw_max if sig.raw_max is not None else sig.mask
        if not lo <= value <= hi:
            raise LocalProtocolError(
                f"{layout.name}.{name} raw {value} outside [{lo}, {hi}]",
                reason="range",
                field=name,
                value=value,
            )
    arrays = {
        k: np.array([v], dtype=np.uint64 if v > (1 << 63) - 1 else np.int64) for k, v in columns.items()
    }
    (data,) = layout.encode_raw(arrays, 1)
    return data


def _decode(layout: MessageLayout, data: bytes) -> dict[str, int]:
    if len(data) != layout.length:
        raise RemoteProtocolError(
            f"{layout.name}: {len(data)} bytes, the ICD says {layout.length}", reason="dlc", value=len(data)
        )
    raw = {k: int(v[0]) for k, v in layout.decode_raw(stack_frames([data], layout)).items()}
    for name, value in raw.items():
        sig = layout.signals[name]
        if bool(sig.out_of_range(np.array([value]))[0]):
            raise RemoteProtocolError(
                f"{layout.name}.{name} raw {value} outside [{sig.raw_min}, {sig.raw_max}]",
                reason="range",
                field=name,
                value=value,
            )
    return raw


def _q(value: float, lsb: float, name: str, mode: str = "round") -> int:
    scaled = value / lsb
    return math.ceil(scaled - 1e-6) if mode == "ceil" else round(scaled)


def _need_sequence(event: Cue | CueCancel) -> int:
    if event.sequence is None:
        raise LocalProtocolError(f"{type(event).__name__} has no sequence yet", field="sequence")
    return event.sequence


def encode_cue(cue: Cue) -> bytes:
    """The 64 canonical bytes of a cue (ICD §5.1): the LAUNCHER_CUE data."""
    tov = cue.time_of_validity_ns
    sig = CUE.signals
    cols = {
        "LauncherId": cue.launcher_id,
        "KeyId": cue.key_id,
        "Sequence": _need_sequence(cue),
        "CueId": cue.cue_id,
        "SystemTrackId": cue.system_track_id,
        "TimeOfValidity": tov,
        # Rounded inwards so the window on the wire is never wider (ICD §5.1).
        "ValidFromMs": -((tov - cue.valid_from_ns) // _MS),
        "ValidUntilMs": (cue.valid_until_ns - tov) // _MS,
    }
    for axis, p, v in zip("XYZ", cue.position_m, cue.velocity_mps, strict=True):
        cols[f"Pos{axis}"] = _q(p, sig[f"Pos{axis}"].scale, f"Pos{axis}")
        cols[f"Vel{axis}"] = _q(v, sig[f"Vel{axis}"].scale, f"Vel{axis}")
    for name, v in (
        ("PosSigmaMax", cue.pos_sigma_max_m),
        ("PosSigmaMin", cue.pos_sigma_min_m),
        ("VelSigmaMax", cue.vel_sigma_max_mps),
        ("VelSigmaMin", cue.vel_sigma_min_mps),
    ):
        cols[name] = _q(v, sig[name].scale, name, "ceil")  # never understate an uncertainty
    return _encode(CUE, cols)


def decode_cue(data: bytes, mac: bytes = b"") -> Cue:
    """A cue from its 64 canonical bytes (and the tag that came with them, if any)."""
    raw = _decode(CUE, data)
    sig = CUE.signals
    tov = raw["TimeOfValidity"]
    try:
        return Cue(
            launcher_id=raw["LauncherId"],
            key_id=raw["KeyId"],
            sequence=raw["Sequence"],
            cue_id=raw["CueId"],
            system_track_id=raw["SystemTrackId"],
            time_of_validity_ns=tov,
            valid_from_ns=tov + raw["ValidFromMs"] * _MS,
            valid_until_ns=tov + raw["ValidUntilMs"] * _MS,
            position_m=tuple(raw[f"Pos{a}"] * sig[f"Pos{a}"].scale for a in "XYZ"),  # type: ignore[arg-type]  # 3 items
            velocity_mps=tuple(raw[f"Vel{a}"] * sig[f"Vel{a}"].scale for a in "XYZ"),  # type: ignore[arg-type]  # 3 items
            pos_sigma_max_m=raw["PosSigmaMax"] * sig["PosSigmaMax"].scale,
            pos_sigma_min_m=raw["PosSigmaMin"] * sig["PosSigmaMin"].scale,
            vel_sigma_max_mps=raw["VelSigmaMax"] * sig["VelSigmaMax"].scale,
            vel_sigma_min_mps=raw["VelSigmaMin"] * sig["VelSigmaMin"].scale,
            mac=mac,
            signed_bytes=bytes(data),
        )
    except ProtocolError as exc:
        raise RemoteProtocolError(
            f"LAUNCHER_CUE: {exc}", reason="range", field=exc.field, value=exc.value
        ) from None


def encode_cue_mac(cue: Cue, mac: bytes) -> bytes:
    """The LAUNCHER_CUE_MAC data carrying ``mac`` for ``cue`` (ICD §5.2)."""
    cols = {
        "LauncherId": cue.launcher_id,
        "KeyId": cue.key_id,
        "Sequence": _need_sequence(cue),
        "CueId": cue.cue_id,
        **_mac_columns(mac),
    }
    return _encode(CUE_MAC, cols)


def decode_cue_mac(data: bytes) -> tuple[int, int, int, int, bytes]:
    """(launcher id, key id, sequence, cue id, tag) of a LAUNCHER_CUE_MAC."""
    raw = _decode(CUE_MAC, data)
    return raw["LauncherId"], raw["KeyId"], raw["Sequence"], raw["CueId"], _mac_of(raw)


def encode_cancel(cancel: CueCancel, mac: bytes) -> bytes:
    """The LAUNCHER_CUE_CANCEL data; the tag covers bytes ``[0, CANCEL_SIGNED_SIZE)`` (ICD §5.3)."""
    cols = {
        "LauncherId": cancel.launcher_id,
        "KeyId": cancel.key_id,
        "Sequence": _need_sequence(cancel),
        "CueId": cancel.cue_id,
        "Reason": cancel.reason,
        "IssueTime": cancel.issue_time_ns,
        **_mac_columns(mac),
    }
    return _encode(CANCEL, cols)


def cancel_signed_bytes(cancel: CueCancel) -> bytes:
    """The canonical bytes of a cancel (what its MAC covers)."""
    return encode_cancel(cancel, bytes(MAC_SIZE))[:CANCEL_SIGNED_SIZE]


def decode_cancel(data: bytes) -> CueCancel:
    raw = _decode(CANCEL, data)
    try:
        return CueCancel(
            launcher_id=raw["LauncherId"],
            key_id=raw["KeyId"],
            sequence=raw["Sequence"],
            cue_id=raw["CueId"],
            reason=raw["Reason"],
            issue_time_ns=raw["IssueTime"],
            mac=_mac_of(raw),
            signed_bytes=bytes(data[:CANCEL_SIGNED_SIZE]),
        )
    except ProtocolError as exc:
        raise RemoteProtocolError(f"LAUNCHER_CUE_CANCEL: {exc}", reason="range", field=exc.field) from None


# --- acks and heartbeats (ICD §5.4, §5.5, §7.5) ----------------------------------
#
# Written with struct, not the numpy layout engine above: these are single
# fixed frames on the verification hot path (every heartbeat, every ack), and
# one struct call is ~50x cheaper than a one-row numpy encode. The DBC stays
# normative: tests/unit/test_launcher_reply_auth.py checks both layouts against
# cantools' encoding of launcher.dbc and launcher_v1.dbc.
_ACK_V1 = struct.Struct("<HBBIIIq")  # LauncherId Result Reason CueSequence CueId AckSequence LauncherTime
_STATUS_V1 = struct.Struct("<HBBIqIH2x")  # LauncherId State TimeLocked HbSeq LauncherTime LastAccepted Fault
_TAIL = struct.Struct("<H6x")  # KeyId, reserved: bytes 24..31 of a v2 answer
assert _ACK_V1.size == _STATUS_V1.size == ACK_V1.length == STATUS_V1.length == 24
assert ACK.length == STATUS.length == 24 + _TAIL.size + REPLY_MAC_SIZE


def _ack_head(ack: Ack) -> bytes:
    return _ACK_V1.pack(
        ack.launcher_id,
        int(ack.result),
        int(ack.reason),
        ack.cue_sequence,
        ack.cue_id,
        ack.ack_sequence,
        ack.launcher_time_ns,
    )


def _status_head(status: LauncherStatus) -> bytes:
    return _STATUS_V1.pack(
        status.launcher_id,
        int(status.state),
        int(status.time_locked),
        status.sequence,
        status.launcher_time_ns,
        status.last_accepted_sequence,
        status.fault_code,
    )


def reply_signed_bytes(event: Ack | LauncherStatus) -> bytes:
    """The 32 bytes an ack's or heartbeat's v2 tag covers (ICD §7.5): its frame up to the tag."""
    head = _ack_head(event) if isinstance(event, Ack) else _status_head(event)
    return head + _TAIL.pack(event.key_id)


def _v2(event: Ack | LauncherStatus) -> bytes:
    if len(event.mac) != REPLY_MAC_SIZE:
        raise LocalProtocolError(
            f"{type(event).__name__} is not signed (key id {event.key_id}, {len(event.mac)}-byte tag)",
            field="mac",
        )
    return reply_signed_bytes(event) + event.mac


def encode_ack(ack: Ack) -> bytes:
    """LAUNCHER_ACK data, ICD v2 (48 bytes) with the ack's ``key_id`` and ``mac``."""
    return _v2(ack)


def encode_status(status: LauncherStatus) -> bytes:
    """LAUNCHER_STATUS data, ICD v2 (48 bytes) with the heartbeat's ``key_id`` and ``mac``."""
    return _v2(status)


def encode_ack_v1(ack: Ack) -> bytes:
    """LAUNCHER_ACK of ICD v1 (24 bytes, no tag): only to test a gateway against a v1 launcher."""
    return _ack_head(ack)


def encode_status_v1(status: LauncherStatus) -> bytes:
    """LAUNCHER_STATUS of ICD v1 (24 bytes, no tag): only to test a gateway against a v1 launcher."""
    return _status_head(status)


def reply_key_id(data: bytes) -> int:
    """KeyId of a v2 ack or heartbeat, read before anything else is trusted (bytes 24-25)."""
    return int.from_bytes(data[24:26], "little")


def _reply_length(name: str, data: bytes) -> bool:
    """True for a v1 (24-byte) answer, False for v2 (48); anything else is refused."""
    if len(data) not in (24, ACK.length):
        raise RemoteProtocolError(
            f"{name}: {len(data)} bytes, the ICD says {ACK.length} (v1: 24)", reason="dlc", value=len(data)
        )
    return len(data) == 24


def decode_ack(data: bytes) -> Ack:
    """An ack from v2 (48 bytes) or v1 (24 bytes) data; the caller has checked the tag."""
    v1 = _reply_length("LAUNCHER_ACK", data)
    lid, result, reason, cue_seq, cue_id, ack_seq, t = _ACK_V1.unpack_from(data)
    try:
        return Ack(
            launcher_id=lid,
            result=result,
            reason=reason,
            cue_sequence=cue_seq,
            cue_id=cue_id,
            ack_sequence=ack_seq,
            launcher_time_ns=t,
            key_id=0 if v1 else reply_key_id(data),
            mac=b"" if v1 else bytes(data[32:48]),
            icd_version=1 if v1 else 2,
        )
    except ProtocolError as exc:
        raise RemoteProtocolError(
            f"LAUNCHER_ACK: {exc}", reason="range", field=exc.field, value=exc.value
        ) from None


def decode_status(data: bytes) -> LauncherStatus:
    """A heartbeat from v2 (48 bytes) or v1 (24 bytes) data; the caller has checked the tag."""
    v1 = _reply_length("LAUNCHER_STATUS", data)
    lid, state, locked, seq, t, last, fault = _STATUS_V1.unpack_from(data)
    try:
        return LauncherStatus(
            launcher_id=lid,
            state=state,
            time_locked=bool(locked & 1),  # TimeLocked is bit 24; bits 25..31 are reserved
            sequence=seq,
            launcher_time_ns=t,
            last_accepted_sequence=last,
            fault_code=fault,
            key_id=0 if v1 else reply_key_id(data),
            mac=b"" if v1 else bytes(data[32:48]),
            icd_version=1 if v1 else 2,
        )
    except ProtocolError as exc:
        raise RemoteProtocolError(
            f"LAUNCHER_STATUS: {exc}", reason="range", field=exc.field, value=exc.value
        ) from None


def sign(event: Cue | CueCancel, keys: Mapping[int, bytes]) -> bytes:
    """The tag of a cue or cancel under ``keys[event.key_id]`` (ICD §7)."""
    key = keys.get(event.key_id)
    if event.key_id == 0 or key is None:
        raise LocalProtocolError(f"no key for key id {event.key_id}", field="key_id", value=event.key_id)
    if isinstance(event, Cue):
        return compute_mac(key, DOMAIN_CUE, encode_cue(event))
    return compute_mac(key, DOMAIN_CANCEL, cancel_signed_bytes(event))

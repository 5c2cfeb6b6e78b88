"""The launcher codec on a serial line (docs/icd/launcher.md §8): sans-I/O, both roles.

Framing is the serial radar's (:mod:`drivers.framing`: COBS, CRC-16/CCITT-FALSE,
0x00 delimiter). Each payload is a two-byte header (message type, protocol
version) followed by the message's bytes exactly as on CAN FD, so a cue's
canonical bytes and tag are the same on both links; a serial cue carries its
32-byte tag right after its 64-byte body, in the same frame. Acks and
heartbeats are signed and verified as on CAN FD (ICD §7.5, one signer per side:
:meth:`LauncherSerialCodec.seal`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from drivers.base import Rejected, Role
from drivers.framing import Deframer, encode_frame
from drivers.launcher import messages as m
from drivers.launcher.codec_can import seal
from drivers.launcher.events import MAC_SIZE, Ack, Cue, CueCancel, LauncherEvent, LauncherStatus
from drivers.launcher.replies import ReplySigner, ReplyVerifier, reply_auth
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["PROTOCOL_VERSION", "LauncherSerialCodec", "SerialType"]

PROTOCOL_VERSION = 2
#: Versions a launcher accepts cues and cancels in: their layout is the same in both.
_CUE_VERSIONS = (1, 2)
_RAW_LIMIT = 512


class SerialType(enum.IntEnum):
    """Payload ``msg_type`` on the serial link (ICD §8.1)."""

    CUE = 0x01
    CUE_CANCEL = 0x02
    ACK = 0x10
    STATUS = 0x20


_SIZES = {
    SerialType.CUE: m.CUE.length + MAC_SIZE,
    SerialType.CUE_CANCEL: m.CANCEL.length,
    SerialType.ACK: m.ACK.length,
    SerialType.STATUS: m.STATUS.length,
}
_TO_DEVICE = (SerialType.CUE, SerialType.CUE_CANCEL)
MAX_PAYLOAD = 2 + max(_SIZES.values())


class LauncherSerialCodec:
    """Sans-I/O codec of the launcher interface on a serial line.

    ``receive_data(bytes)`` then ``drain()``; ``send(event) -> bytes``.
    ``launcher_id``, ``keys``, ``reply_key_id``, ``max_reply_age_ns``,
    ``accept_v1`` and ``icd_version`` as for
    :class:`~drivers.launcher.codec_can.LauncherCanCodec`. A gateway that
    accepts v1 launchers sends its cues with header version 1 (a v2 launcher
    takes cues in either).
    """

    def __init__(
        self,
        role: Role,
        *,
        launcher_id: int | None = None,
        keys: Mapping[int, bytes] | None = None,
        reply_key_id: int | None = None,
        max_reply_age_ns: int = 1_000_000_000,
        accept_v1: bool = False,
        icd_version: int = 2,
    ) -> None:
        if not isinstance(role, Role):
            raise LocalProtocolError(f"role {role!r} is not a Role", field="role", value=role)
        self.role = role
        self.launcher_id = launcher_id
        self._keys = dict(keys or {})
        self._label = f"launcher {launcher_id if launcher_id is not None else '*'} (serial)"
        self._deframer = Deframer(MAX_PAYLOAD, label=self._label)
        self._ready: list[LauncherEvent | Rejected] = []
        self._now_ns: int | None = None
        self.icd_version = 1 if accept_v1 else icd_version
        self.signer: ReplySigner | None
        self.verifier: ReplyVerifier | None
        self.signer, self.verifier = reply_auth(
            role,
            self._keys,
            launcher_id=launcher_id,
            max_age_ns=max_reply_age_ns,
            accept_v1=accept_v1,
            label=self._label,
            icd_version=icd_version,
            reply_key_id=reply_key_id,
        )

    def seal(self, event: LauncherEvent) -> LauncherEvent:
        """``event`` signed as this role sends it (see :meth:`LauncherCanCodec.seal`)."""
        return seal(self.role, event, self._keys, self.signer, self.icd_version)

    def send(self, event: LauncherEvent) -> bytes:
        """One framed payload for ``event`` (the role decides which events it may send).
        An event without a tag is sealed first; one with a tag goes as it is."""
        if not getattr(event, "mac", b""):
            event = self.seal(event)
        v1 = self.icd_version == 1
        if self.role is Role.GATEWAY and isinstance(event, Cue | CueCancel):
            assert event.sequence is not None
            assert self.verifier is not None
            self.verifier.expect(event.sequence, event.cue_id)
            if isinstance(event, Cue):
                return self._frame(SerialType.CUE, m.encode_cue(event) + event.mac)
            return self._frame(SerialType.CUE_CANCEL, m.encode_cancel(event, event.mac))
        if self.role is Role.DEVICE and isinstance(event, Ack):
            return self._frame(SerialType.ACK, m.encode_ack_v1(event) if v1 else m.encode_ack(event))
        if self.role is Role.DEVICE and isinstance(event, LauncherStatus):
            return self._frame(SerialType.STATUS, m.encode_status_v1(event) if v1 else m.encode_status(event))
        raise LocalProtocolError(
            f"the {self.role.value} role cannot send {type(event).__name__}", field="event", value=event
        )

    def _frame(self, kind: SerialType, body: bytes) -> bytes:
        return encode_frame(bytes((int(kind), self.icd_version)) + body)

    def receive_data(self, data: bytes, now_ns: int | None = None) -> None:
        """Take bytes from the line; complete events wait for :meth:`drain`.

        ``now_ns`` (UTC ns): receive time an answer's ``LauncherTime`` is judged
        against (ICD §7.5); None: not judged."""
        self._now_ns = now_ns
        for item in self._deframer.feed(data):
            if isinstance(item, Rejected):
                self._ready.append(item)
            else:
                self._ready.append(self._payload(item))

    def drain(self) -> list[LauncherEvent | Rejected]:
        """Every complete event and rejection so far, in stream order."""
        out, self._ready = self._ready, []
        return out

    def _payload(self, p: bytes) -> LauncherEvent | Rejected:
        if len(p) < 2:
            return self._reject("truncated", f"payload of {len(p)} bytes has no header", p)
        try:
            kind = SerialType(p[0])
        except ValueError:
            return self._reject("unknown_type", f"message type 0x{p[0]:02X}", p)
        to_device = kind in _TO_DEVICE
        if p[1] not in (_CUE_VERSIONS if to_device else (1, PROTOCOL_VERSION)):
            return self._reject("version", f"protocol version {p[1]}, expected {PROTOCOL_VERSION}", p)
        body = p[2:]
        if not to_device and p[1] == 1:
            # ICD v1 answer: untagged, 24 bytes; the verifier refuses it unless accepted (§7.6).
            if len(body) != (m.ACK_V1 if kind is SerialType.ACK else m.STATUS_V1).length:
                return self._reject("length", f"{kind.name} v1 of {len(body)} bytes", p)
        elif len(body) != _SIZES[kind]:
            return self._reject("length", f"{kind.name} of {len(body)} bytes, the ICD says {_SIZES[kind]}", p)
        if to_device != (self.role is Role.DEVICE):
            return self._reject("direction", f"{kind.name} is not sent to the {self.role.value}", p)
        try:
            if kind is SerialType.CUE:
                return m.decode_cue(body[: m.CUE.length], body[m.CUE.length :])
            if kind is SerialType.CUE_CANCEL:
                return m.decode_cancel(body)
        except RemoteProtocolError as exc:
            return Rejected(
                RemoteProtocolError(
                    f"{self._label}: {exc}", reason=exc.reason, field=exc.field, value=exc.value
                ),
                p[:_RAW_LIMIT],
            )
        assert self.verifier is not None
        return self.verifier.check(body, ack=kind is SerialType.ACK, rx_ns=self._now_ns)

    def _reject(self, reason: str, what: str, raw: bytes) -> Rejected:
        return Rejected(RemoteProtocolError(f"{self._label}: {what}", reason=reason), raw[:_RAW_LIMIT])

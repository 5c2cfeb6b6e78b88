"""The launcher codec on a serial line (docs/icd/launcher.md §8): sans-I/O, both roles.

Framing is the serial radar's (:mod:`drivers.framing`: COBS, CRC-16/CCITT-FALSE,
0x00 delimiter). Each payload is a two-byte header (message type, protocol
version) followed by the message's bytes exactly as on CAN FD, so a cue's
canonical bytes and tag are the same on both links; a serial cue carries its
32-byte tag right after its 64-byte body, in the same frame.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from drivers.base import Rejected, Role
from drivers.framing import Deframer, encode_frame
from drivers.launcher import messages as m
from drivers.launcher.events import MAC_SIZE, Ack, Cue, CueCancel, LauncherEvent, LauncherStatus
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["PROTOCOL_VERSION", "LauncherSerialCodec", "SerialType"]

PROTOCOL_VERSION = 1
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
    ``launcher_id`` and ``keys`` as for :class:`~drivers.launcher.codec_can.LauncherCanCodec`.
    """

    def __init__(
        self, role: Role, *, launcher_id: int | None = None, keys: Mapping[int, bytes] | None = None
    ) -> None:
        if not isinstance(role, Role):
            raise LocalProtocolError(f"role {role!r} is not a Role", field="role", value=role)
        self.role = role
        self.launcher_id = launcher_id
        self._keys = dict(keys or {})
        self._label = f"launcher {launcher_id if launcher_id is not None else '*'} (serial)"
        self._deframer = Deframer(MAX_PAYLOAD, label=self._label)
        self._ready: list[LauncherEvent | Rejected] = []

    def send(self, event: LauncherEvent) -> bytes:
        """One framed payload for ``event`` (the role decides which events it may send)."""
        if self.role is Role.GATEWAY and isinstance(event, Cue):
            body = m.encode_cue(event)
            return self._frame(SerialType.CUE, body + m.sign(event, self._keys))
        if self.role is Role.GATEWAY and isinstance(event, CueCancel):
            return self._frame(SerialType.CUE_CANCEL, m.encode_cancel(event, m.sign(event, self._keys)))
        if self.role is Role.DEVICE and isinstance(event, Ack):
            return self._frame(SerialType.ACK, m.encode_ack(event))
        if self.role is Role.DEVICE and isinstance(event, LauncherStatus):
            return self._frame(SerialType.STATUS, m.encode_status(event))
        raise LocalProtocolError(
            f"the {self.role.value} role cannot send {type(event).__name__}", field="event", value=event
        )

    @staticmethod
    def _frame(kind: SerialType, body: bytes) -> bytes:
        return encode_frame(bytes((int(kind), PROTOCOL_VERSION)) + body)

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the line; complete events wait for :meth:`drain`."""
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
        if p[1] != PROTOCOL_VERSION:
            return self._reject("version", f"protocol version {p[1]}, expected {PROTOCOL_VERSION}", p)
        try:
            kind = SerialType(p[0])
        except ValueError:
            return self._reject("unknown_type", f"message type 0x{p[0]:02X}", p)
        body = p[2:]
        if len(body) != _SIZES[kind]:
            return self._reject("length", f"{kind.name} of {len(body)} bytes, the ICD says {_SIZES[kind]}", p)
        if (kind in _TO_DEVICE) != (self.role is Role.DEVICE):
            return self._reject("direction", f"{kind.name} is not sent to the {self.role.value}", p)
        try:
            if kind is SerialType.CUE:
                return m.decode_cue(body[: m.CUE.length], body[m.CUE.length :])
            if kind is SerialType.CUE_CANCEL:
                return m.decode_cancel(body)
            ev: Ack | LauncherStatus = m.decode_ack(body) if kind is SerialType.ACK else m.decode_status(body)
        except RemoteProtocolError as exc:
            return Rejected(
                RemoteProtocolError(
                    f"{self._label}: {exc}", reason=exc.reason, field=exc.field, value=exc.value
                ),
                p[:_RAW_LIMIT],
            )
        if self.launcher_id is not None and ev.launcher_id != self.launcher_id:
            return self._reject("launcher_id", f"{kind.name} from launcher {ev.launcher_id}", p)
        return ev

    def _reject(self, reason: str, what: str, raw: bytes) -> Rejected:
        return Rejected(RemoteProtocolError(f"{self._label}: {what}", reason=reason), raw[:_RAW_LIMIT])

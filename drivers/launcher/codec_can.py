"""The launcher codec on CAN FD (docs/icd/launcher.md §3, §5): sans-I/O, both roles.

* ``Role.GATEWAY`` sends :class:`Cue` (two frames: LAUNCHER_CUE, then
  LAUNCHER_CUE_MAC with the full 256-bit tag) and :class:`CueCancel` (one
  frame, tag inside), signed with ``keys[event.key_id]``; it receives
  :class:`Ack` and :class:`LauncherStatus`.
* ``Role.DEVICE`` (the launcher or its emulator) receives cues and cancels
  and sends acks and status. A cue is handed out once its body and its MAC
  frame (same ``Sequence`` and ``CueId``) have both arrived, in either order;
  a body whose MAC frame has not come ``mac_timeout_ns`` after it is handed
  out by :meth:`LauncherCanCodec.expire` with an empty ``mac`` (unsigned).

The codec checks the ICD's layout and ranges; whether a cue is fresh,
authentic and new is the receiver's decision
(:class:`drivers.launcher.validator.CueValidator`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from drivers.base import Rejected, Role
from drivers.can_radar.frame import CanFrame
from drivers.launcher import messages as m
from drivers.launcher.events import Ack, Cue, CueCancel, LauncherEvent, LauncherStatus
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["LauncherCanCodec"]

_RAW_LIMIT = 512


#: The DBC's arbitration ids (before ``id_offset``).
BASE_IDS = tuple(sorted(lay.frame_id for lay in (m.CANCEL, m.CUE, m.CUE_MAC, m.ACK, m.STATUS)))
#: Largest ``id_offset``: every DBC id plus it must stay an 11-bit identifier.
MAX_ID_OFFSET = 0x7FF - max(BASE_IDS)


class LauncherCanCodec:
    """Sans-I/O codec of the launcher interface on CAN FD.

    ``launcher_id``: on the gateway, acks and status of another launcher are
    rejected (``launcher_id``); None accepts any. ``keys`` maps key id to
    secret (gateway: to sign). ``id_offset`` is added to the DBC's ids.
    """

    def __init__(
        self,
        role: Role,
        *,
        launcher_id: int | None = None,
        keys: Mapping[int, bytes] | None = None,
        mac_timeout_ns: int = 200_000_000,
        id_offset: int = 0,
    ) -> None:
        if not isinstance(role, Role):
            raise LocalProtocolError(f"role {role!r} is not a Role", field="role", value=role)
        if not 0 <= id_offset <= MAX_ID_OFFSET:
            raise LocalProtocolError(
                f"id_offset {id_offset} puts launcher ids outside 11 bits (0..{MAX_ID_OFFSET})",
                field="id_offset",
            )
        self.role = role
        self.launcher_id = launcher_id
        self._keys = dict(keys or {})
        self.mac_timeout_ns = mac_timeout_ns
        self.id_offset = id_offset
        self._label = f"launcher {launcher_id if launcher_id is not None else '*'} (CAN)"
        ids = {lay.frame_id + id_offset: lay.name for lay in (m.CANCEL, m.CUE, m.CUE_MAC, m.ACK, m.STATUS)}
        self._names = ids
        # Cue bodies and MAC frames waiting for each other: (sequence, cue id) -> parts.
        self._halves: dict[tuple[int, int], tuple[bytes | None, bytes | None, int]] = {}

    @property
    def frame_ids(self) -> list[int]:
        """Arbitration ids this interface uses (for a receive filter)."""
        return sorted(self._names)

    # --- sending -------------------------------------------------------------------

    def send(self, event: LauncherEvent) -> list[CanFrame]:
        """Frames for one event (the role decides which events it may send)."""
        off = self.id_offset
        if self.role is Role.GATEWAY:
            if isinstance(event, Cue):
                body = m.encode_cue(event)
                tag = m.sign(event, self._keys)
                return [
                    CanFrame(m.CUE.frame_id + off, body, True),
                    CanFrame(m.CUE_MAC.frame_id + off, m.encode_cue_mac(event, tag), True),
                ]
            if isinstance(event, CueCancel):
                tag = m.sign(event, self._keys)
                return [CanFrame(m.CANCEL.frame_id + off, m.encode_cancel(event, tag), True)]
        else:
            if isinstance(event, Ack):
                return [CanFrame(m.ACK.frame_id + off, m.encode_ack(event), True)]
            if isinstance(event, LauncherStatus):
                return [CanFrame(m.STATUS.frame_id + off, m.encode_status(event), True)]
        raise LocalProtocolError(
            f"the {self.role.value} role cannot send {type(event).__name__}", field="event", value=event
        )

    # --- receiving -----------------------------------------------------------------

    def receive_frame(
        self, arbitration_id: int, data: bytes, timestamp_ns: int
    ) -> list[LauncherEvent | Rejected]:
        return self.receive_frames([CanFrame(arbitration_id, data, True, False, timestamp_ns)])

    def receive_frames(self, frames: Iterable[CanFrame]) -> list[LauncherEvent | Rejected]:
        """Decode frames into events and rejections, in arrival order."""
        out: list[LauncherEvent | Rejected] = []
        for f in frames:
            name = self._names.get(f.arbitration_id) if not f.is_extended else None
            if name is None:
                out.append(
                    self._reject(
                        "unknown_id", f"arbitration id 0x{f.arbitration_id:X} is not in the DBC", f.data
                    )
                )
                continue
            try:
                out.extend(self._one(name, bytes(f.data), f.timestamp_ns))
            except RemoteProtocolError as exc:
                out.append(
                    Rejected(
                        RemoteProtocolError(
                            f"{self._label}: {exc}", reason=exc.reason, field=exc.field, value=exc.value
                        ),
                        f.data[:_RAW_LIMIT],
                    )
                )
        return out

    def _one(self, name: str, data: bytes, ts: int) -> list[LauncherEvent | Rejected]:
        gateway = self.role is Role.GATEWAY
        if gateway and name in (m.ACK.name, m.STATUS.name):
            ev: Ack | LauncherStatus = m.decode_ack(data) if name == m.ACK.name else m.decode_status(data)
            if self.launcher_id is not None and ev.launcher_id != self.launcher_id:
                return [self._reject("launcher_id", f"{name} from launcher {ev.launcher_id}", data)]
            return [ev]
        if not gateway and name == m.CANCEL.name:
            return [m.decode_cancel(data)]
        if not gateway and name == m.CUE.name:
            cue = m.decode_cue(data)  # checks the layout now, pairs later
            assert cue.sequence is not None
            return self._pair((cue.sequence, cue.cue_id), data, None, ts)
        if not gateway and name == m.CUE_MAC.name:
            _, _, seq, cue_id, tag = m.decode_cue_mac(data)
            return self._pair((seq, cue_id), None, tag, ts)
        return [self._reject("direction", f"{name} is not sent to the {self.role.value}", data)]

    def _pair(
        self, key: tuple[int, int], body: bytes | None, tag: bytes | None, ts: int
    ) -> list[LauncherEvent | Rejected]:
        held = self._halves.get(key)
        if held is None:
            self._halves[key] = (body, tag, ts)
            return []
        hb, ht, _t0 = held
        if (body is not None and hb is not None) or (tag is not None and ht is not None):
            what = "LAUNCHER_CUE" if body is not None else "LAUNCHER_CUE_MAC"
            return [
                self._reject(
                    "duplicate", f"second {what} for sequence {key[0]} cue {key[1]}", body or tag or b""
                )
            ]
        del self._halves[key]
        full_body = body if body is not None else hb
        full_tag = tag if tag is not None else ht
        assert full_body is not None
        assert full_tag is not None
        return [m.decode_cue(full_body, full_tag)]

    def expire(self, now_ns: int) -> list[LauncherEvent | Rejected]:
        """Hand out cue bodies whose MAC frame is overdue as unsigned cues (empty
        ``mac``); drop MAC frames whose body never came (``incomplete``)."""
        out: list[LauncherEvent | Rejected] = []
        for key, (body, tag, t0) in list(self._halves.items()):
            if now_ns - t0 < self.mac_timeout_ns:
                continue
            del self._halves[key]
            if body is not None:
                out.append(m.decode_cue(body))
            else:
                out.append(
                    self._reject(
                        "incomplete",
                        f"MAC frame for sequence {key[0]} cue {key[1]} without a cue body",
                        tag or b"",
                    )
                )
        return out

    def _reject(self, reason: str, what: str, raw: bytes) -> Rejected:
        return Rejected(RemoteProtocolError(f"{self._label}: {what}", reason=reason), bytes(raw[:_RAW_LIMIT]))

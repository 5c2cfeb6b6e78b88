"""The launcher codec on CAN FD (docs/icd/launcher.md §3, §5): sans-I/O, both roles.

* ``Role.GATEWAY`` sends :class:`Cue` (two frames: LAUNCHER_CUE, then
  LAUNCHER_CUE_MAC with the full 256-bit tag) and :class:`CueCancel` (one
  frame, tag inside), signed with ``keys[event.key_id]``; it receives
  :class:`Ack` and :class:`LauncherStatus`.
* ``Role.DEVICE`` (the launcher or its emulator) receives cues and cancels
  and sends acks and status, signed (ICD v2, §7.5) by its
  :class:`~drivers.launcher.replies.ReplySigner`, which owns their counters.
  A cue is handed out once its body and its MAC frame (same ``Sequence``
  and ``CueId``) have both arrived, in either order;
  a body whose MAC frame has not come ``mac_timeout_ns`` after it is handed
  out by :meth:`LauncherCanCodec.expire` with an empty ``mac`` (unsigned).

The codec is the one signer of each side (:meth:`LauncherCanCodec.seal`).
It checks the ICD's layout and ranges; on the gateway it also verifies every
ack and heartbeat (:class:`~drivers.launcher.replies.ReplyVerifier`: tag,
counter, time, and that an ack answers a cue this codec sent). Whether a cue
is fresh, authentic and new is the launcher's decision
(:class:`drivers.launcher.validator.CueValidator`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from drivers.base import Rejected, Role
from drivers.launcher import messages as m
from drivers.launcher.events import Ack, Cue, CueCancel, LauncherEvent, LauncherStatus
from drivers.launcher.replies import ReplySigner, ReplyVerifier, reply_auth
from hilgw.can import CanFrame
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
    secret (gateway: to sign cues and verify answers; device: to sign answers
    with ``reply_key_id``, default the highest). ``id_offset`` is added to the
    DBC's ids. Gateway: ``max_reply_age_ns`` bounds an answer's
    ``LauncherTime`` against its receive time, ``accept_v1`` lets untagged ICD
    v1 answers through (ICD §7.6). Device: ``icd_version`` 1 plays a v1
    launcher (untagged answers; for tests of that refusal).
    """

    def __init__(
        self,
        role: Role,
        *,
        launcher_id: int | None = None,
        keys: Mapping[int, bytes] | None = None,
        mac_timeout_ns: int = 200_000_000,
        id_offset: int = 0,
        reply_key_id: int | None = None,
        max_reply_age_ns: int = 1_000_000_000,
        accept_v1: bool = False,
        icd_version: int = 2,
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
        self.icd_version = icd_version
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
        ids = {lay.frame_id + id_offset: lay.name for lay in (m.CANCEL, m.CUE, m.CUE_MAC, m.ACK, m.STATUS)}
        self._names = ids
        # Cue bodies and MAC frames waiting for each other: (sequence, cue id) -> parts.
        self._halves: dict[tuple[int, int], tuple[bytes | None, bytes | None, int]] = {}

    @property
    def frame_ids(self) -> list[int]:
        """Arbitration ids this interface uses (for a receive filter)."""
        return sorted(self._names)

    # --- sending -------------------------------------------------------------------

    def seal(self, event: LauncherEvent) -> LauncherEvent:
        """``event`` signed as this role sends it: a cue's or cancel's full tag
        (gateway), an answer's counter and truncated tag (device, ICD v2). The
        one place either side signs."""
        return seal(self.role, event, self._keys, self.signer, self.icd_version)

    def send(self, event: LauncherEvent) -> list[CanFrame]:
        """Frames for one event (the role decides which events it may send).
        An event without a tag is sealed first; one with a tag goes as it is."""
        off = self.id_offset
        if not getattr(event, "mac", b""):
            event = self.seal(event)
        if self.role is Role.GATEWAY:
            if isinstance(event, Cue):
                assert event.sequence is not None
                assert self.verifier is not None
                self.verifier.expect(event.sequence, event.cue_id)
                return [
                    CanFrame(m.CUE.frame_id + off, m.encode_cue(event), True),
                    CanFrame(m.CUE_MAC.frame_id + off, m.encode_cue_mac(event, event.mac), True),
                ]
            if isinstance(event, CueCancel):
                assert event.sequence is not None
                assert self.verifier is not None
                self.verifier.expect(event.sequence, event.cue_id)
                return [CanFrame(m.CANCEL.frame_id + off, m.encode_cancel(event, event.mac), True)]
        else:
            v1 = self.icd_version == 1
            if isinstance(event, Ack):
                data = m.encode_ack_v1(event) if v1 else m.encode_ack(event)
                return [CanFrame(m.ACK.frame_id + off, data, True)]
            if isinstance(event, LauncherStatus):
                data = m.encode_status_v1(event) if v1 else m.encode_status(event)
                return [CanFrame(m.STATUS.frame_id + off, data, True)]
        raise LocalProtocolError(
            f"the {self.role.value} role cannot send {type(event).__name__}", field="event", value=event
        )

    # --- receiving -----------------------------------------------------------------

    def receive_frame(
        self, arbitration_id: int, data: bytes, timestamp_ns: int
    ) -> list[LauncherEvent | Rejected]:
        return self.receive_frames([CanFrame(arbitration_id, data, True, False, timestamp_ns)])

    def receive_frames(
        self, frames: Iterable[CanFrame], now_ns: int | None = None
    ) -> list[LauncherEvent | Rejected]:
        """Decode frames into events and rejections, in arrival order.

        ``now_ns`` (UTC ns) is the receive time an answer's ``LauncherTime``
        is judged against (ICD §7.5); None: each frame's ``timestamp_ns``
        (0: not judged)."""
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
                ts = now_ns if now_ns is not None else f.timestamp_ns
                out.extend(self._one(name, bytes(f.data), ts))
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
            assert self.verifier is not None
            return [self.verifier.check(data, ack=name == m.ACK.name, rx_ns=ts or None)]
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


def seal(
    role: Role,
    event: LauncherEvent,
    keys: Mapping[int, bytes],
    signer: ReplySigner | None,
    icd_version: int,
) -> LauncherEvent:
    """Sign ``event`` as ``role`` sends it (both codecs; ICD §7, §7.5)."""
    if role is Role.GATEWAY and isinstance(event, Cue | CueCancel):
        return dataclasses.replace(event, mac=m.sign(event, keys))
    if role is Role.DEVICE and isinstance(event, Ack | LauncherStatus):
        if icd_version == 1:
            return event
        if signer is None:
            raise LocalProtocolError("no key to sign acks and heartbeats with (ICD v2 §7.5)", field="keys")
        return signer.seal(event)
    raise LocalProtocolError(
        f"the {role.value} role cannot send {type(event).__name__}", field="event", value=event
    )

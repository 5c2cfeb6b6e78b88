"""Authenticated acks and heartbeats, ICD v2 (docs/icd/launcher.md §7.5): sans-I/O.

* :class:`ReplySigner` is the launcher side: the one owner of the launcher's
  freshness counters (``AckSequence``, ``HeartbeatSequence``) and the one place
  its answers are signed. The launcher's codec calls it on every send.
* :class:`ReplyVerifier` is the gateway side: it checks, in this order, the
  first failure deciding the drop reason (all counted by the caller):

  1. ICD version: a v1 (24-byte, untagged) answer is refused (``auth_v1``)
     unless ``accept_v1``; once a launcher has sent an authentic v2 answer,
     v1 answers claiming to be from it are refused for good (``auth_downgrade``);
  2. signed: ``KeyId`` not 0 (``auth_unsigned``), provisioned (``auth_unknown_key``);
  3. the tag verifies over the bytes as received, in constant time (``auth_bad_mac``);
  4. addressed from this launcher (``launcher_id``, after the tag: a forged id
     is a bad tag first);
  5. ``LauncherTime`` within ``max_age_ns`` of the receive time (``auth_stale``);
  6. its freshness value (``LauncherTime``, counter) is after the last accepted
     of its kind from this launcher: a later time, or the same time and a
     higher counter (``auth_replayed``). Time first, so a rebooted launcher whose
     counters start over at 1 is heard again at once; the counter orders
     answers made within one clock tick and makes each one unique;
  7. an ack answers a cue or cancel this side sent, with that ``CueId``; a
     heartbeat's ``LastAcceptedSequence`` is not above the highest sequence this
     side sent, once it has sent one (``auth_mismatched``; only with a
     ``launcher_id``: sequences are per launcher).

  Only an answer that passes every check moves the freshness mark (a rejected
  one consumes nothing, so forged frames cannot push it ahead, ICD §7.3).

Keys are the cue keys of the link (ICD §7.2): the same secret, but each
message kind has its own domain (§7.1, §7.5), so no tag verifies as another kind's.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections import OrderedDict
from collections.abc import Mapping

from drivers.base import U32_MAX, Rejected, Role
from drivers.launcher import messages as m
from drivers.launcher.events import REPLY_MAC_SIZE, Ack, LauncherStatus
from hilgw.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["AUTH_REASONS", "ReplySigner", "ReplyVerifier", "reply_auth"]

#: Every drop reason of :class:`ReplyVerifier` (the ``reason`` label on /metrics).
AUTH_REASONS = (
    "auth_v1",
    "auth_downgrade",
    "auth_unsigned",
    "auth_unknown_key",
    "auth_bad_mac",
    "auth_replayed",
    "auth_stale",
    "auth_mismatched",
)
_RAW_LIMIT = 512
_EXPECT_LIMIT = 4096  # sent cues/cancels remembered for matching acks (minutes of traffic)


class ReplySigner:
    """The launcher's answers: counter, key id and truncated tag (ICD §7.5).

    ``key_id``: the key to sign with (rotation: provision the new key on both
    ends, switch this, retire the old one); default the highest id in ``keys``.
    Without any key the answers go out unsigned (KeyId 0, a zero tag), which a
    gateway refuses (``auth_unsigned``): a launcher with no key is never heard.
    """

    def __init__(self, keys: Mapping[int, bytes], key_id: int | None = None) -> None:
        self._keys = dict(keys)
        self.key_id = (max(self._keys) if self._keys else 0) if key_id is None else key_id
        if self._keys and (self.key_id not in self._keys or self.key_id == 0):
            raise LocalProtocolError(f"no key for key id {self.key_id}", field="key_id", value=self.key_id)
        self.ack_counter = 0
        self.heartbeat_counter = 0

    def seal(self, event: Ack | LauncherStatus) -> Ack | LauncherStatus:
        """``event`` with the next counter of its kind, ``key_id`` and its tag.
        Counters wrap from 2^32 - 1 to 1: freshness is ordered by time first (§7.5)."""
        if isinstance(event, Ack):
            self.ack_counter = self.ack_counter % U32_MAX + 1
            event = dataclasses.replace(event, ack_sequence=self.ack_counter)
        else:
            self.heartbeat_counter = self.heartbeat_counter % U32_MAX + 1
            event = dataclasses.replace(event, sequence=self.heartbeat_counter)
        return self.sign(event)

    def sign(self, event: Ack | LauncherStatus, key: bytes | None = None) -> Ack | LauncherStatus:
        """``event`` (counter as it is) tagged under ``key_id`` (or under ``key``: a forgery, for tests)."""
        event = dataclasses.replace(event, key_id=self.key_id, mac=b"", icd_version=2)
        if self.key_id == 0 and key is None:
            return dataclasses.replace(event, mac=bytes(REPLY_MAC_SIZE))  # unsigned
        domain = m.DOMAIN_ACK if isinstance(event, Ack) else m.DOMAIN_STATUS
        tag = m.compute_reply_mac(key or self._keys[self.key_id], domain, m.reply_signed_bytes(event))
        return dataclasses.replace(event, mac=tag)


class ReplyVerifier:
    """The gateway's acceptance state for one link's acks and heartbeats.

    ``launcher_id``: None accepts any (state is kept per launcher id).
    ``max_age_ns``: how far ``LauncherTime`` may be from the receive time.
    """

    def __init__(
        self,
        keys: Mapping[int, bytes],
        *,
        launcher_id: int | None = None,
        max_age_ns: int = 1_000_000_000,
        accept_v1: bool = False,
        label: str = "launcher",
    ) -> None:
        self._keys = dict(keys)
        self.launcher_id = launcher_id
        self.max_age_ns = max_age_ns
        self.accept_v1 = accept_v1
        self._label = label
        #: (launcher id, "ack"|"status") -> the last accepted (LauncherTime, counter).
        self.highest: dict[tuple[int, str], tuple[int, int]] = {}
        self.v2_seen: set[int] = set()
        self._sent: OrderedDict[int, int] = OrderedDict()  # sequence -> cue id, of cues and cancels sent
        self._max_sent = 0

    def expect(self, sequence: int, cue_id: int) -> None:
        """This side sent a cue or cancel: an ack of it may come."""
        self._sent[sequence] = cue_id
        self._max_sent = max(self._max_sent, sequence)
        while len(self._sent) > _EXPECT_LIMIT:
            self._sent.popitem(last=False)

    def check(self, data: bytes, *, ack: bool, rx_ns: int | None) -> Ack | LauncherStatus | Rejected:
        """The verified event, or why not. ``rx_ns``: receive time (UTC ns); None skips check 5."""
        name = "LAUNCHER_ACK" if ack else "LAUNCHER_STATUS"
        v2_len = (m.ACK if ack else m.STATUS).length
        if len(data) == (m.ACK_V1 if ack else m.STATUS_V1).length:
            return self._v1(data, ack, name)
        if len(data) != v2_len:
            return self._reject("dlc", f"{name} of {len(data)} bytes, the ICD says {v2_len}", data, name)
        key_id = m.reply_key_id(data)
        if key_id == 0:
            return self._reject("auth_unsigned", f"{name} with KeyId 0", data, name)
        key = self._keys.get(key_id)
        if key is None:
            return self._reject("auth_unknown_key", f"{name} under unknown key id {key_id}", data, name)
        signed, tag = (
            data[: m.REPLY_SIGNED_SIZE],
            data[m.REPLY_SIGNED_SIZE : m.REPLY_SIGNED_SIZE + REPLY_MAC_SIZE],
        )
        want = m.compute_reply_mac(key, m.DOMAIN_ACK if ack else m.DOMAIN_STATUS, signed)
        if not hmac.compare_digest(want, tag):
            return self._reject("auth_bad_mac", f"{name} tag does not verify (key id {key_id})", data, name)
        try:
            event: Ack | LauncherStatus = m.decode_ack(data) if ack else m.decode_status(data)
        except RemoteProtocolError as exc:
            return self._reject(exc.reason or "range", str(exc), data, name)
        lid = event.launcher_id
        if self.launcher_id is not None and lid != self.launcher_id:
            return self._reject("launcher_id", f"{name} from launcher {lid}", data, name)
        kind = "ack" if ack else "status"
        if rx_ns is not None and abs(rx_ns - event.launcher_time_ns) > self.max_age_ns:
            age = (rx_ns - event.launcher_time_ns) / 1e9
            return self._reject(
                "auth_stale",
                f"{name} launcher time {age:+.3f} s from receipt (limit ±{self.max_age_ns / 1e9:g} s)",
                data,
                name,
            )
        counter = event.ack_sequence if isinstance(event, Ack) else event.sequence
        fresh = (event.launcher_time_ns, counter)
        high = self.highest.get((lid, kind), (-1, 0))
        if fresh <= high:
            return self._reject(
                "auth_replayed",
                f"{name} (time {fresh[0]}, counter {fresh[1]}) not after the last accepted "
                f"(time {high[0]}, counter {high[1]})",
                data,
                name,
            )
        if isinstance(event, Ack) and self._sent.get(event.cue_sequence) != event.cue_id:
            return self._reject(
                "auth_mismatched",
                f"{name} for sequence {event.cue_sequence} cue {event.cue_id}, which this side did not send",
                data,
                name,
            )
        if (
            isinstance(event, LauncherStatus)
            and self.launcher_id is not None
            and self._max_sent
            and event.last_accepted_sequence > self._max_sent
        ):
            return self._reject(
                "auth_mismatched",
                f"{name} reports sequence {event.last_accepted_sequence} accepted, above the highest "
                f"this side sent ({self._max_sent})",
                data,
                name,
            )
        self.highest[(lid, kind)] = fresh
        self.v2_seen.add(lid)
        return event

    def _v1(self, data: bytes, ack: bool, name: str) -> Ack | LauncherStatus | Rejected:
        if not self.accept_v1:
            return self._reject(
                "auth_v1",
                f"{name} of ICD v1 (no MAC); set accept_launcher_icd_v1 to accept a v1 launcher",
                data,
                name,
            )
        try:
            event: Ack | LauncherStatus = m.decode_ack(data) if ack else m.decode_status(data)
        except RemoteProtocolError as exc:
            return self._reject(exc.reason or "range", str(exc), data, name)
        if event.launcher_id in self.v2_seen:
            return self._reject(
                "auth_downgrade",
                f"{name} of ICD v1 from launcher {event.launcher_id}, which speaks v2",
                data,
                name,
            )
        if self.launcher_id is not None and event.launcher_id != self.launcher_id:
            return self._reject("launcher_id", f"{name} from launcher {event.launcher_id}", data, name)
        return event

    def _reject(self, reason: str, what: str, raw: bytes, name: str) -> Rejected:
        return Rejected(
            RemoteProtocolError(f"{self._label}: {what}", reason=reason, field=name), bytes(raw[:_RAW_LIMIT])
        )


#: Inputs of the ICD's test vectors (docs/icd/launcher.md §7.5).
VECTOR_KEY_ID = 7
VECTOR_KEY = bytes(range(32))
VECTOR_TIME_NS = 1_800_000_000_000_000_000


def reference_vectors() -> dict[str, Ack | LauncherStatus]:
    """The signed ack and heartbeat of the ICD's test vectors, made by :class:`ReplySigner`."""
    from drivers.launcher.events import AckResult, LauncherState, NackReason

    signer = ReplySigner({VECTOR_KEY_ID: VECTOR_KEY})
    ack = Ack(
        launcher_id=3,
        result=AckResult.ACK,
        reason=NackReason.NONE,
        cue_sequence=1_796_500_000,
        cue_id=1001,
        ack_sequence=0,
        launcher_time_ns=VECTOR_TIME_NS,
    )
    status = LauncherStatus(
        launcher_id=3,
        state=LauncherState.READY,
        sequence=0,
        launcher_time_ns=VECTOR_TIME_NS + 500_000_000,
        last_accepted_sequence=1_796_500_000,
    )
    return {"LAUNCHER_ACK": signer.seal(ack), "LAUNCHER_STATUS": signer.seal(status)}


def reply_auth(
    role: Role,
    keys: Mapping[int, bytes],
    *,
    launcher_id: int | None,
    max_age_ns: int,
    accept_v1: bool,
    label: str,
    icd_version: int,
    reply_key_id: int | None,
) -> tuple[ReplySigner | None, ReplyVerifier | None]:
    """The answer signer (launcher side, ICD v2) or verifier (gateway side) of a
    launcher codec; the same for the CAN and the serial codec."""
    if role is Role.GATEWAY:
        verifier = ReplyVerifier(
            keys, launcher_id=launcher_id, max_age_ns=max_age_ns, accept_v1=accept_v1, label=label
        )
        return None, verifier
    return (ReplySigner(keys, reply_key_id) if icd_version == 2 else None), None

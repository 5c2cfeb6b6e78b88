"""ICD v2 (docs/icd/launcher.md §7.5): authenticated acks and heartbeats.

10,000 valid answers pass; 10,000 forged, bit-flipped, replayed, stale or
mismatched ones are all refused, each for its own reason (pure codec, both
links); the ICD's test vectors; cantools decodes v2 frames; v1 answers are
refused unless accepted, and never after the launcher spoke v2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections import Counter
from pathlib import Path

import cantools
import numpy as np
import pytest

from drivers.base import Rejected, Role
from drivers.launcher import (
    Ack,
    AckResult,
    LauncherCanCodec,
    LauncherSerialCodec,
    LauncherState,
    LauncherStatus,
    NackReason,
)
from drivers.launcher import messages as m
from drivers.launcher.replies import VECTOR_KEY, VECTOR_KEY_ID, reference_vectors
from hilgw.can import CanFrame

REPO = Path(__file__).resolve().parents[2]
LID = 3
KEY = bytes(range(40, 72))
KEYS = {7: KEY}
T0 = 1_800_000_000_000_000_000
MAX_AGE_NS = 1_000_000_000
N = 10_000


def ack(cue_seq: int, t_ns: int) -> Ack:
    return Ack(
        launcher_id=LID,
        result=AckResult.ACK if cue_seq % 3 else AckResult.NACK,
        reason=NackReason.NONE if cue_seq % 3 else NackReason.STALE,
        cue_sequence=cue_seq,
        cue_id=cue_seq + 7,
        ack_sequence=0,
        launcher_time_ns=t_ns,
    )


def status(t_ns: int) -> LauncherStatus:
    return LauncherStatus(launcher_id=LID, state=LauncherState.READY, sequence=0, launcher_time_ns=t_ns)


class Stream:
    """A launcher (device codec, the signer) and the gateway (codec, the verifier) on CAN FD."""

    def __init__(self) -> None:
        self.dev = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
        self.gw = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS, max_reply_age_ns=MAX_AGE_NS)

    def valid(self, i: int, t_ns: int) -> CanFrame:
        if i % 2:
            assert self.gw.verifier is not None
            self.gw.verifier.expect(1000 + i, 1007 + i)  # the gateway sent that cue
            return self.dev.send(ack(1000 + i, t_ns))[0]
        return self.dev.send(status(t_ns))[0]

    def receive(self, frame: CanFrame, t_ns: int) -> Ack | LauncherStatus | Rejected:
        (out,) = self.gw.receive_frames([frame], t_ns)
        assert isinstance(out, Ack | LauncherStatus | Rejected)
        return out


def test_10000_valid_pass_and_10000_bad_are_all_refused() -> None:
    rng = np.random.default_rng(20)
    s = Stream()
    accepted: list[CanFrame] = []
    want: Counter[str] = Counter()
    got: Counter[str] = Counter()
    false_rejections = 0
    for i in range(N):
        t = T0 + i * 50_000_000  # 20 answers a second
        # A valid answer, received up to 0.9 s late (within the 1 s limit)...
        frame = s.valid(i, t)
        out = s.receive(frame, t + int(rng.integers(0, 900_000_000)))
        if isinstance(out, Rejected):
            false_rejections += 1
        accepted.append(frame)
        # ... and one bad one, of five kinds in turn.
        kind = i % 5
        if kind == 0:  # forged: the right key id, a key the attacker guessed
            bad = s.valid(i, t)
            data = bytearray(bad.data)
            data[m.REPLY_SIGNED_SIZE :] = m.compute_reply_mac(
                rng.bytes(32), m.DOMAIN_ACK if i % 2 else m.DOMAIN_STATUS, bytes(data[: m.REPLY_SIGNED_SIZE])
            )
            bad = bad._replace(data=bytes(data))
            want["auth_bad_mac"] += 1
        elif kind == 1:  # one bit flipped anywhere in the frame (the tag too)
            bad = s.valid(i, t)
            data = bytearray(bad.data)
            bit = int(rng.integers(0, 8 * len(data)))
            data[bit // 8] ^= 1 << (bit % 8)
            bad = bad._replace(data=bytes(data))
            key_bits = range(8 * 24, 8 * 26)  # KeyId: the key lookup fails first
            want["auth_unknown_key" if bit in key_bits else "auth_bad_mac"] += 1
        elif kind == 2:  # replayed: an answer the gateway took in the last 0.75 s (older: stale first)
            bad = accepted[-1 - int(rng.integers(0, min(15, len(accepted))))]
            want["auth_replayed"] += 1
        elif kind == 3:  # stale: signed, fresh counter, but its time is off by more than the limit
            off = int(rng.integers(MAX_AGE_NS + 1, 100 * MAX_AGE_NS)) * (1 if rng.random() < 0.5 else -1)
            bad = s.valid(i, t + off)
            want["auth_stale"] += 1
        else:  # mismatched: a signed ack of a cue the gateway never sent
            bad = s.dev.send(ack(5_000_000 + i, t))[0]
            want["auth_mismatched"] += 1
        out = s.receive(bad, t)
        assert isinstance(out, Rejected), (kind, out)
        got[out.reason] += 1
    assert false_rejections == 0
    assert sum(got.values()) == N
    assert got == want


def test_serial_refuses_what_can_refuses() -> None:
    dev = LauncherSerialCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    gw = LauncherSerialCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    good = dev.send(status(T0))
    flipped = bytearray(dev.send(status(T0)))
    flipped[-3] ^= 0x01  # inside the COBS-encoded tag/CRC: crc, or if it survives, bad_mac
    stale = dev.send(status(T0 - 5 * 10**9))
    forged = LauncherSerialCodec(Role.DEVICE, launcher_id=LID, keys={7: bytes(32)}).send(status(T0))
    for data in (good, bytes(flipped), good, stale, forged):
        gw.receive_data(data, T0)
    out = gw.drain()
    assert isinstance(out[0], LauncherStatus)
    assert [r.reason for r in out[1:]][1:] == ["auth_replayed", "auth_stale", "auth_bad_mac"]  # type: ignore[union-attr]
    assert isinstance(out[1], Rejected)


def test_icd_test_vectors_match_the_doc_and_an_independent_hmac() -> None:
    doc = (REPO / "docs/icd/launcher.md").read_text(encoding="utf-8")
    for name, event in reference_vectors().items():
        data = m.encode_ack(event) if isinstance(event, Ack) else m.encode_status(event)  # type: ignore[arg-type]
        signed, tag = data[:32], data[32:]
        domain = b"hilgw.launcher.v2." + (b"ack" if name == "LAUNCHER_ACK" else b"status") + b"\x00"
        assert tag == hmac.new(VECTOR_KEY, domain + signed, hashlib.sha256).digest()[:16]
        row = re.search(rf"\| {name} \| `([0-9a-f]+)` \| `([0-9a-f]+)` \|", doc)
        assert row is not None, f"no test vector row for {name} in the ICD"
        assert (row.group(1), row.group(2)) == (signed.hex(), tag.hex())
        gw = LauncherCanCodec(Role.GATEWAY, launcher_id=3, keys={VECTOR_KEY_ID: VECTOR_KEY})
        assert gw.verifier is not None
        gw.verifier.expect(1_796_500_000, 1001)
        arb = m.ACK.frame_id if name == "LAUNCHER_ACK" else m.STATUS.frame_id
        (back,) = gw.receive_frames([CanFrame(arb, data, True)])
        assert back == event


def test_cantools_decodes_v2_frames() -> None:
    db = cantools.database.load_file(str(REPO / "drivers/launcher/launcher.dbc"))
    assert db.version == "hilgw-launcher-fd 2"
    vec = reference_vectors()
    a, st = vec["LAUNCHER_ACK"], vec["LAUNCHER_STATUS"]
    assert isinstance(a, Ack)
    assert isinstance(st, LauncherStatus)
    got = db.decode_message(m.ACK.frame_id, m.encode_ack(a), decode_choices=False)
    assert (got["CueSequence"], got["AckSequence"], got["KeyId"]) == (1_796_500_000, 1, VECTOR_KEY_ID)
    mac = int(got["Mac0"]).to_bytes(8, "little") + int(got["Mac1"]).to_bytes(8, "little")
    assert mac == a.mac
    got = db.decode_message(m.STATUS.frame_id, m.encode_status(st), decode_choices=False)
    assert (got["HeartbeatSequence"], got["LauncherTime"], got["KeyId"]) == (1, st.launcher_time_ns, 7)
    assert db.get_message_by_name("LAUNCHER_STATUS").length == 48


def test_v1_answers_are_refused_unless_accepted_and_never_after_v2() -> None:
    v1 = LauncherCanCodec(Role.DEVICE, launcher_id=LID, icd_version=1)
    (frame,) = v1.send(status(T0))
    assert len(frame.data) == 24
    strict = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    (out,) = strict.receive_frames([frame], T0)
    assert isinstance(out, Rejected)
    assert out.reason == "auth_v1"
    assert "accept_launcher_icd_v1" in str(out.error)
    lenient = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS, accept_v1=True)
    (out,) = lenient.receive_frames([frame], T0)
    assert isinstance(out, LauncherStatus)
    assert out.icd_version == 1
    v2 = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    (ok,) = lenient.receive_frames(v2.send(status(T0)), T0)
    assert isinstance(ok, LauncherStatus)
    assert ok.icd_version == 2
    (out,) = lenient.receive_frames([frame], T0)
    assert isinstance(out, Rejected)
    assert out.reason == "auth_downgrade"
    # On serial, a v1 launcher's frames carry header version 1 and 24-byte bodies.
    sdev = LauncherSerialCodec(Role.DEVICE, launcher_id=LID, icd_version=1)
    sgw = LauncherSerialCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    sgw.receive_data(sdev.send(status(T0)), T0)
    (out,) = sgw.drain()
    assert isinstance(out, Rejected)
    assert out.reason == "auth_v1"


def test_a_rejected_answer_consumes_no_counter() -> None:
    s = Stream()
    frames = [s.valid(0, T0) for _ in range(3)]  # heartbeats 1, 2, 3
    forged = bytearray(frames[2].data)
    forged[40] ^= 0xFF
    assert isinstance(s.receive(frames[2]._replace(data=bytes(forged)), T0), Rejected)
    assert isinstance(s.receive(frames[0], T0), LauncherStatus)  # 1: the forgery moved nothing
    assert isinstance(s.receive(frames[2], T0), LauncherStatus)  # 3: a gap is fine (lost frames)
    out = s.receive(frames[1], T0)  # 2: now below the highest accepted
    assert isinstance(out, Rejected)
    assert out.reason == "auth_replayed"


@pytest.mark.parametrize("key_id", [0, 8])
def test_unsigned_and_unknown_key(key_id: int) -> None:
    s = Stream()
    data = bytearray(s.valid(0, T0).data)
    data[24:26] = key_id.to_bytes(2, "little")
    out = s.receive(CanFrame(m.STATUS.frame_id, bytes(data), True), T0)
    assert isinstance(out, Rejected)
    assert out.reason == ("auth_unsigned" if key_id == 0 else "auth_unknown_key")


def test_struct_layouts_are_the_dbc_layouts() -> None:
    """messages.py packs answers with struct for speed; launcher.dbc and
    launcher_v1.dbc stay normative: cantools encodes the same bytes."""
    rng = np.random.default_rng(5)
    v2 = cantools.database.load_file(str(REPO / "drivers/launcher/launcher.dbc"))
    v1 = cantools.database.load_file(str(REPO / "drivers/launcher/launcher_v1.dbc"))
    for _ in range(200):
        u32 = lambda: int(rng.integers(0, 2**32))  # noqa: E731
        a = Ack(
            launcher_id=int(rng.integers(0, 2**16)),
            result=AckResult.NACK,
            reason=NackReason(int(rng.integers(1, 11))),
            cue_sequence=u32(),
            cue_id=u32(),
            ack_sequence=u32(),
            launcher_time_ns=int(rng.integers(0, 2**63)),
            key_id=int(rng.integers(1, 2**16)),
            mac=rng.bytes(16),
        )
        st = LauncherStatus(
            launcher_id=int(rng.integers(0, 2**16)),
            state=LauncherState(int(rng.integers(0, 3))),
            sequence=u32(),
            launcher_time_ns=int(rng.integers(0, 2**63)),
            last_accepted_sequence=u32(),
            fault_code=int(rng.integers(0, 2**16)),
            time_locked=bool(rng.integers(0, 2)),
            key_id=int(rng.integers(1, 2**16)),
            mac=rng.bytes(16),
        )
        common_a = {
            "LauncherId": a.launcher_id, "Result": int(a.result), "Reason": int(a.reason),
            "CueSequence": a.cue_sequence, "CueId": a.cue_id, "AckSequence": a.ack_sequence,
            "LauncherTime": a.launcher_time_ns,
        }  # fmt: skip
        common_s = {
            "LauncherId": st.launcher_id, "State": int(st.state), "TimeLocked": int(st.time_locked),
            "HeartbeatSequence": st.sequence, "LauncherTime": st.launcher_time_ns,
            "LastAcceptedSequence": st.last_accepted_sequence, "FaultCode": st.fault_code,
        }  # fmt: skip
        for db, ev, cols, enc in (
            (v2, a, common_a, m.encode_ack), (v2, st, common_s, m.encode_status),
            (v1, a, common_a, m.encode_ack_v1), (v1, st, common_s, m.encode_status_v1),
        ):  # fmt: skip
            name = "LAUNCHER_ACK" if isinstance(ev, Ack) else "LAUNCHER_STATUS"
            full = dict(cols)
            if db is v2:
                full["KeyId"] = ev.key_id
                full["Mac0"] = int.from_bytes(ev.mac[:8], "little")
                full["Mac1"] = int.from_bytes(ev.mac[8:], "little")
            want = db.encode_message(name, full, scaling=False, strict=False)
            assert enc(ev) == want, name  # type: ignore[operator]
            back = (m.decode_ack if isinstance(ev, Ack) else m.decode_status)(want)
            assert back == (ev if db is v2 else dataclasses.replace(ev, key_id=0, mac=b"", icd_version=1))


def test_key_rotation_any_provisioned_key_verifies() -> None:
    """ICD §7.5 keys: the launcher signs with its newest key; the gateway takes any of its own."""
    old, new = bytes(range(32)), bytes(range(1, 33))
    gw = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys={7: old, 8: new})
    before = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys={7: old})
    during = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys={7: old, 8: new})
    assert during.signer is not None
    assert during.signer.key_id == 8
    after = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys={9: bytes(32)})
    got = [gw.receive_frames(c.send(status(T0 + i)), T0)[0] for i, c in enumerate((before, during))]
    assert [g.key_id for g in got if isinstance(g, LauncherStatus)] == [7, 8]
    (out,) = gw.receive_frames(after.send(status(T0 + 2)), T0)
    assert isinstance(out, Rejected)
    assert out.reason == "auth_unknown_key"


def test_a_rebooted_launcher_is_heard_again_at_once() -> None:
    """Its counters start over at 1; its clock does not: freshness is (time, counter)."""
    gw = LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    first = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    for i in range(50):
        assert isinstance(gw.receive_frames(first.send(status(T0 + i)), T0)[0], LauncherStatus)
    rebooted = LauncherCanCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    (out,) = gw.receive_frames(rebooted.send(status(T0 + 100)), T0)
    assert isinstance(out, LauncherStatus)
    assert out.sequence == 1
    (old,) = gw.receive_frames(first.send(status(T0 + 99)), T0)  # later counter, earlier time
    assert isinstance(old, Rejected)
    assert old.reason == "auth_replayed"


def test_a_gateway_accepting_v1_sends_serial_cues_a_v2_launcher_still_takes() -> None:
    from tests.unit.test_launcher_codec import cue

    gw = LauncherSerialCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS, accept_v1=True)
    wire = gw.send(cue())
    dev = LauncherSerialCodec(Role.DEVICE, launcher_id=LID, keys=KEYS)
    dev.receive_data(wire)
    (got,) = dev.drain()
    assert not isinstance(got, Rejected)
    strict = LauncherSerialCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS)
    assert strict.send(cue()) != wire  # header version 2 there


def test_a_heartbeat_claiming_a_sequence_never_sent_is_mismatched() -> None:
    s = Stream()
    assert isinstance(
        s.receive(s.dev.send(dataclasses.replace(status(T0), last_accepted_sequence=99))[0], T0),
        LauncherStatus,
    )  # nothing sent yet: not judged
    assert s.gw.verifier is not None
    s.gw.verifier.expect(100, 5)
    ok = s.dev.send(dataclasses.replace(status(T0 + 1), last_accepted_sequence=100))[0]
    assert isinstance(s.receive(ok, T0), LauncherStatus)
    out = s.receive(s.dev.send(dataclasses.replace(status(T0 + 2), last_accepted_sequence=101))[0], T0)
    assert isinstance(out, Rejected)
    assert out.reason == "auth_mismatched"

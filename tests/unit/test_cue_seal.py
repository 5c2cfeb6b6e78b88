"""One MAC per cue (docs/cue-path.md §3, docs/icd/launcher.md §7.1).

The cue core does not sign cues or cancels; it asks the launcher link to seal
them (the codec's signer over the ICD's wire bytes), journals *that* tag, and
the link sends exactly the sealed event. These tests fail if a cue carries a
second (message-level) MAC, if the journal names a MAC other than the wire
tag, or if the in-memory launcher (or the launcher's validator) accepts a
tampered tag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest

from drivers.base import Role
from drivers.launcher import Cue as WireCue
from drivers.launcher import CueValidator, LauncherCanCodec, NackReason
from drivers.launcher import messages as lm
from gateway.cue.audit import AuditLog
from gateway.cue.book import Now, Publish, SendCancel, SendCue
from gateway.cue.core import CueCore
from gateway.cue.memory_link import FakeLauncher
from gateway.cue.seal import KeySealer, Sealed
from gateway.cue.signing import compute_mac
from hilgw.can import CanFrame
from hilgw.v1 import cue_pb2
from tests.unit.cue_support import (
    GW,
    KEYS,
    L1_SECRET,
    L2_SECRET,
    M0,
    T0,
    WIRE_ID,
    WIRE_KEY_ID,
    Harness,
    authority_command,
    cue_config,
    make_batch,
    make_track,
    wire_tag_verifies,
)


def _frames(sealed: Sealed) -> list[CanFrame]:
    """The CAN FD frames the gateway's codec puts on the wire for a sealed event."""
    return LauncherCanCodec(Role.GATEWAY, launcher_id=WIRE_ID).send(sealed.wire)


def _wire_tag(frames: list[CanFrame]) -> bytes:
    """The tag as it travels: in LAUNCHER_CUE_MAC, or in the cancel's own frame (ICD §5.2, §5.3)."""
    for f in frames:
        if f.arbitration_id == lm.CUE_MAC.frame_id:
            return lm.decode_cue_mac(f.data)[4]
        if f.arbitration_id == lm.CANCEL.frame_id:
            return lm.decode_cancel(f.data).mac
    raise AssertionError("no tag on the wire")


class _Recorder(Harness):
    """A harness that also keeps every send effect (sealed events) in order."""

    def __post_init__(self) -> None:
        self.effects: list[SendCue | SendCancel] = []
        super().__post_init__()

    def apply(self, effects: list[object]) -> None:  # type: ignore[override]
        self.effects += [e for e in effects if isinstance(e, SendCue | SendCancel)]
        super().apply(effects)  # type: ignore[arg-type]


def _live_then_resent_then_cancelled() -> _Recorder:
    h = _Recorder()
    h.heartbeat()
    h.set_authority("auto_cue")
    h.launchers["L1"].drop_acks = True  # no ack: a resend with a new sequence and a new tag
    h.tracks(make_track(1, t_ns=h.now.wall_ns))
    for _ in range(12):  # 1.2 s > ack_timeout_s: at least one resend
        h.advance(0.1)
        h.heartbeat()
        h.tracks(make_track(1, t_ns=h.now.wall_ns))
    h.set_authority("hold")  # the live cue is cancelled at the launcher
    return h


def test_a_cue_carries_one_mac_and_it_is_the_wire_tag() -> None:
    h = _live_then_resent_then_cancelled()
    cues = [e for e in h.effects if isinstance(e, SendCue)]
    cancels = [e for e in h.effects if isinstance(e, SendCancel)]
    assert len(cues) >= 2
    assert cancels
    published = {
        p.message.sequence: p.message for p in h.published if isinstance(p.message, cue_pb2.EngagementCue)
    }
    for e in [*cues, *cancels]:
        msg = e.sealed.message
        tag = _wire_tag(_frames(e.sealed))
        # The message's one MAC is the tag on the wire, under the wire key ...
        assert msg.mac == e.sealed.tag == tag
        assert msg.key_id == str(WIRE_KEY_ID)
        assert wire_tag_verifies(msg, L1_SECRET)
        # ... and no message-level MAC (over the proto's canonical bytes) rides along.
        assert msg.mac != compute_mac(msg, L1_SECRET)
    for e in cues:  # what MQTT consumers get is the cue as sent, with that same tag
        assert published[e.cue.sequence].mac == e.sealed.tag
    assert len({e.sealed.tag for e in cues}) == len(cues)  # every send its own sequence and tag


def test_the_journal_names_the_tag_the_launcher_verified() -> None:
    h = _live_then_resent_then_cancelled()
    fake = h.launchers["L1"]
    sent = {e.sealed.message.sequence: e.sealed for e in h.effects}
    records = [r["data"] for r in h.audit.records if r["kind"] in ("cue_sent", "cue_resent", "cancel_sent")]
    assert len(records) == len(sent)
    for d in records:
        sealed = sent[d["sequence"]]
        assert d["mac"] == sealed.tag.hex()
        assert d["key_id"] == sealed.key_id == WIRE_KEY_ID
    # The fake launcher took every one of them: it verified these tags from the frames.
    took = {m.sequence: m.mac.hex() for m in [*fake.accepted, *fake.cancels]}
    assert took
    assert took.items() <= {d["sequence"]: d["mac"] for d in records}.items()
    assert not fake.rejected


def _flip(index: int, bit: int) -> object:
    def tamper(frames: list[CanFrame]) -> list[CanFrame]:
        f = frames[index]
        data = bytearray(f.data)
        data[bit // 8] ^= 1 << (bit % 8)
        return [*frames[:index], f._replace(data=bytes(data)), *frames[index + 1 :]]

    return tamper


def _one_cue(seq: int = 1) -> tuple[Sealed, cue_pb2.EngagementCue]:
    trk = make_track(1, t_ns=T0)
    msg = cue_pb2.EngagementCue(
        cue_id=5,
        launcher_id="L1",
        system_track_id=1,
        time_of_validity_ns=T0,
        valid_from_ns=T0,
        valid_until_ns=T0 + 5 * 10**9,
        sequence=seq,
    )
    msg.state.CopyFrom(trk.state)
    return KeySealer(WIRE_ID, {WIRE_KEY_ID: L1_SECRET}).seal_cue(msg), msg


# Every bit of the 32-byte tag (LAUNCHER_CUE_MAC bytes 16..47), and bits across the body.
_TAG_BITS = range(16 * 8, 48 * 8)
_BODY_BITS = range(0, 64 * 8, 7)


@pytest.mark.parametrize(("frame", "bits"), [(1, _TAG_BITS), (0, _BODY_BITS)], ids=["tag", "body"])
def test_a_tampered_cue_is_refused_by_the_memory_link_and_the_launcher_validator(
    frame: int, bits: range
) -> None:
    refused = 0
    for bit in bits:
        sealed, _ = _one_cue(seq=bit + 1)
        fake = FakeLauncher("L1", {WIRE_KEY_ID: L1_SECRET}, lambda: T0 + 10**9, wire_id=WIRE_ID)
        fake.tamper = _flip(frame, bit)  # type: ignore[assignment]
        ack = fake.receive_cue(sealed)
        assert ack is not None
        assert ack.result == cue_pb2.ACK_RESULT_NACK, bit
        assert not fake.accepted
        # The launcher (and its emulator): the same frames through its codec and validator.
        frames = fake.tamper(_frames(sealed))  # type: ignore[misc]
        device = LauncherCanCodec(Role.DEVICE, launcher_id=WIRE_ID)
        got = [e for e in device.receive_frames(frames, T0) if isinstance(e, WireCue)]
        if got:  # a flip that breaks the layout is refused before any tag check
            v = CueValidator(WIRE_ID, {WIRE_KEY_ID: L1_SECRET})
            assert v.check_cue(got[0], T0 + 10**9) is not NackReason.NONE, bit
        refused += 1
    assert refused == len(bits)


def test_untampered_cue_is_accepted_and_a_wrong_key_is_not() -> None:
    sealed, _ = _one_cue()
    fake = FakeLauncher("L1", {WIRE_KEY_ID: L1_SECRET}, lambda: T0 + 10**9, wire_id=WIRE_ID)
    ack = fake.receive_cue(sealed)
    assert ack is not None
    assert ack.result == cue_pb2.ACK_RESULT_ACK
    # Sealed under another secret, or another key id, or with the tag of another cue.
    other = KeySealer(WIRE_ID, {WIRE_KEY_ID: L2_SECRET}).seal_cue(_one_cue(2)[1])
    unknown = KeySealer(WIRE_ID, {9: L1_SECRET}).seal_cue(_one_cue(3)[1])
    moved = dataclasses.replace(sealed, wire=dataclasses.replace(_one_cue(4)[0].wire, mac=sealed.tag))
    for bad, why in ((other, "bad_mac"), (unknown, "unknown_key"), (moved, "bad_mac")):
        nack = fake.receive_cue(bad)
        assert nack is not None
        assert (nack.result, nack.reason) == (cue_pb2.ACK_RESULT_NACK, why)
    assert len(fake.accepted) == 1


def test_a_replayed_wire_cue_is_refused() -> None:
    sealed, _ = _one_cue(seq=10)
    fake = FakeLauncher("L1", {WIRE_KEY_ID: L1_SECRET}, lambda: T0 + 10**9, wire_id=WIRE_ID)
    assert fake.receive_cue(sealed).result == cue_pb2.ACK_RESULT_ACK  # type: ignore[union-attr]
    again = fake.receive_cue(sealed)
    assert again is not None
    assert again.reason == "replayed"


def test_the_tag_is_a_plain_hmac_over_the_icd_bytes() -> None:
    """Known answer independent of the codec's signer: HMAC-SHA256(key, domain || 64 bytes)."""
    sealed, _ = _one_cue()
    body = lm.encode_cue(dataclasses.replace(sealed.wire, mac=b""))
    assert sealed.tag == hmac.new(L1_SECRET, b"hilgw.launcher.v1.cue\x00" + body, hashlib.sha256).digest()


def test_a_launcher_without_a_link_is_never_cued_and_it_is_audited() -> None:
    cfg = cue_config()
    sealers = {"L2": KeySealer(WIRE_ID, {WIRE_KEY_ID: L2_SECRET})}  # none for L1
    now = Now(T0, M0)
    core = CueCore(cfg, KEYS, GW, AuditLog(None), now, sealers=sealers)
    core.on_heartbeat("L1", now)
    core.on_authority_command(authority_command("auto_cue", 1, now.wall_ns).SerializeToString(), now)
    seq_before = core.launchers["L1"].sequence
    effects = core.on_tracks(make_batch([make_track(1, t_ns=now.wall_ns)], now.wall_ns), now)
    assert not [e for e in effects if isinstance(e, SendCue | SendCancel)]
    assert not [e for e in effects if isinstance(e, Publish) and e.kind == "cue"]
    refused = [r["data"] for r in core.audit.records if r["kind"] == "send_refused"]
    assert refused
    assert refused[0]["why"] == "seal"
    assert "no launcher link for L1" in refused[0]["detail"]
    assert core.launchers["L1"].sequence == seq_before  # a cue that could not be sealed used no sequence
    assert not core.open_cues()

"""Launcher interface (docs/icd/launcher.md): CAN FD and serial codecs, MAC, and the
launcher-side acceptance checks (stale, replay, tampered, unsigned, unknown key)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Rejected, Role
from drivers.framing import encode_frame
from drivers.launcher import (
    Ack,
    AckResult,
    Cue,
    CueCancel,
    CueValidator,
    LauncherCanCodec,
    LauncherSerialCodec,
    LauncherState,
    LauncherStatus,
    NackReason,
    covariance_summary,
)
from drivers.launcher import messages as m
from hilgw.can import CanFrame
from hilgw.errors import LocalProtocolError

NOW = 1_800_000_000_000_000_000
KEY = bytes(range(32))
KEYS = {7: KEY}
LID = 3


def cue(seq: int = 10, **kw: object) -> Cue:
    base: dict[str, object] = dict(
        launcher_id=LID,
        key_id=7,
        cue_id=1001,
        system_track_id=42,
        time_of_validity_ns=NOW,
        valid_from_ns=NOW - 1_000_000_000,
        valid_until_ns=NOW + 4_000_000_000,
        position_m=(4_100_000.25, 500_000.5, 4_800_000.75),
        velocity_mps=(120.125, -340.5, 910.0),
        pos_sigma_max_m=35.5,  # on the wire grid: round trips exactly
        pos_sigma_min_m=8.0,
        vel_sigma_max_mps=6.25,
        vel_sigma_min_mps=1.0,
        sequence=seq,
    )
    base.update(kw)
    return Cue(**base)  # type: ignore[arg-type]


def cancel(seq: int = 11, cue_id: int = 1001) -> CueCancel:
    return CueCancel(launcher_id=LID, key_id=7, cue_id=cue_id, issue_time_ns=NOW, reason=2, sequence=seq)


def ack() -> Ack:
    return Ack(
        launcher_id=LID,
        result=AckResult.NACK,
        reason=NackReason.REPLAY,
        cue_sequence=10,
        cue_id=1001,
        ack_sequence=5,
        launcher_time_ns=NOW,
    )


def status() -> LauncherStatus:
    return LauncherStatus(
        launcher_id=LID,
        state=LauncherState.NOT_READY,
        sequence=77,
        launcher_time_ns=NOW,
        last_accepted_sequence=9,
    )


def same_cue(a: object, b: object) -> bool:
    """Equal up to the float rounding of scale x raw (positions to 1e-6 m)."""
    assert isinstance(a, Cue | CueCancel)
    assert isinstance(b, type(a))
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name in ("mac", "signed_bytes"):
            continue
        if isinstance(x, tuple):
            assert x == pytest.approx(y, abs=1e-6), f.name
        elif isinstance(x, float):
            assert x == pytest.approx(y, abs=1e-9), f.name
        else:
            assert x == y, f.name
    return True


def can_pair() -> tuple[LauncherCanCodec, LauncherCanCodec]:
    return LauncherCanCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS), LauncherCanCodec(
        Role.DEVICE, launcher_id=LID, keys=KEYS
    )


def ser_pair() -> tuple[LauncherSerialCodec, LauncherSerialCodec]:
    return LauncherSerialCodec(Role.GATEWAY, launcher_id=LID, keys=KEYS), LauncherSerialCodec(
        Role.DEVICE, launcher_id=LID, keys=KEYS
    )


# --- round trips -----------------------------------------------------------------------


def test_cue_over_can_is_two_fd_frames_and_round_trips_in_either_order() -> None:
    gw, _ = can_pair()
    frames = gw.send(cue())
    assert [(f.arbitration_id, len(f.data), f.is_fd) for f in frames] == [
        (0x501, 64, True),
        (0x502, 48, True),
    ]
    for order in (frames, frames[::-1]):
        _, dev = can_pair()
        (got,) = dev.receive_frames(order)
        assert isinstance(got, Cue)
        assert same_cue(got, cue())
        assert got.mac == hmac.new(KEY, m.DOMAIN_CUE + frames[0].data, hashlib.sha256).digest()
        assert got.signed_bytes == frames[0].data


def test_quantisation_of_a_cue() -> None:
    c = cue(valid_from_ns=NOW - 1_500_001, valid_until_ns=NOW + 2_999_999, pos_sigma_max_m=35.01)
    gw, dev = can_pair()
    (got,) = dev.receive_frames(gw.send(c))
    assert isinstance(got, Cue)
    # The window is rounded inwards to whole ms, sigmas upwards.
    assert got.valid_from_ns == NOW - 1_000_000
    assert got.valid_until_ns == NOW + 2_000_000
    assert got.pos_sigma_max_m == 35.5
    assert got.position_m == pytest.approx(c.position_m, abs=0.005)


@pytest.mark.parametrize("event", [cancel(), ack(), status()], ids=["cancel", "ack", "status"])
def test_single_frame_messages_round_trip_on_can(event: object) -> None:
    gw, dev = can_pair()
    gw.send(cue())  # the ack answers it (ICD §7.5: an ack of nothing sent is refused)
    sender, receiver = (gw, dev) if isinstance(event, CueCancel) else (dev, gw)
    sealed = sender.seal(event)  # type: ignore[arg-type]
    (frame,) = sender.send(sealed)
    (got,) = receiver.receive_frames([frame])
    if isinstance(event, CueCancel):
        assert same_cue(got, event)
    else:
        assert got == sealed
        assert len(frame.data) == 48


@pytest.mark.parametrize("event", [cue(), cancel(), ack(), status()], ids=["cue", "cancel", "ack", "status"])
def test_serial_round_trip_whole_byte_by_byte_and_with_junk(event: object) -> None:
    gw, dev = ser_pair()
    sender, receiver = (gw, dev) if isinstance(event, Cue | CueCancel) else (dev, gw)
    sealed = sender.seal(event)  # type: ignore[arg-type]
    wire = sender.send(sealed)
    for chunks in ([wire], [wire[i : i + 1] for i in range(len(wire))], [b"\x00\x00", wire, b"\x01\x02"]):
        _, r = ser_pair()
        recv = r if receiver is dev else ser_pair()[0]
        if recv is not r:
            recv.send(cue())  # the ack answers it
        for c in chunks:
            recv.receive_data(c)
        out = recv.drain()
        got = [e for e in out if not isinstance(e, Rejected)]
        assert len(got) == 1
        if isinstance(event, Cue | CueCancel):
            assert same_cue(got[0], event)
        else:
            assert got[0] == sealed


def test_serial_and_can_carry_the_same_canonical_bytes_and_tag() -> None:
    (body, mac_frame) = can_pair()[0].send(cue())
    gs, ds = ser_pair()
    ds.receive_data(gs.send(cue()))
    (got,) = ds.drain()
    assert isinstance(got, Cue)
    assert got.signed_bytes == body.data
    assert got.mac == mac_frame.data[16:48]


def test_every_prefix_of_a_serial_cue_yields_nothing_until_complete() -> None:
    gw, _ = ser_pair()
    wire = gw.send(cue())
    for n in range(len(wire) - 1):
        _, dev = ser_pair()
        dev.receive_data(wire[:n])
        assert dev.drain() == []


def test_serial_corruption_is_rejected_by_reason() -> None:
    gw, dev = ser_pair()
    wire = bytearray(gw.send(cue()))
    wire[10] ^= 0x01 if wire[10] not in (0x00, 0x01) else 0x02
    dev.receive_data(bytes(wire))
    (rej,) = dev.drain()
    assert isinstance(rej, Rejected)
    assert rej.reason in {"crc", "framing"}
    dev.receive_data(encode_frame(bytes([0x7F, 1]) + bytes(24)))
    dev.receive_data(encode_frame(bytes([0x10, 9]) + bytes(24)))
    dev.receive_data(encode_frame(bytes([0x10, 2]) + bytes(48)))  # an ACK sent to the launcher
    assert [r.reason for r in dev.drain()] == ["unknown_type", "version", "direction"]  # type: ignore[union-attr]


def test_can_rejections() -> None:
    gw, dev = can_pair()
    out = gw.receive_frames(
        [
            CanFrame(0x123, bytes(8), True),
            CanFrame(0x510, bytes(10), True),
            *can_pair()[1].send(dataclasses.replace(ack(), launcher_id=9)),
            gw.send(cancel())[0],
        ]
    )
    assert [r.reason for r in out] == ["unknown_id", "dlc", "launcher_id", "direction"]  # type: ignore[union-attr]
    assert dev.receive_frames([gw.send(cue())[1], gw.send(cue())[1]])[0].reason == "duplicate"  # type: ignore[union-attr]


def test_roles_and_keys_are_enforced_on_send() -> None:
    gw, dev = can_pair()
    with pytest.raises(LocalProtocolError):
        gw.send(ack())
    with pytest.raises(LocalProtocolError):
        dev.send(cue())
    with pytest.raises(LocalProtocolError, match="key id 8"):
        gw.send(cue(key_id=8))
    with pytest.raises(LocalProtocolError, match="sequence"):
        gw.send(cue(seq=None))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="does not go with"):
        Ack(launcher_id=1, result=AckResult.ACK, reason=NackReason.STALE, cue_sequence=1, cue_id=1,
            ack_sequence=1, launcher_time_ns=0)  # fmt: skip
    with pytest.raises(LocalProtocolError, match="position_m"):
        cue(position_m=(float("nan"), 0.0, 0.0))


# --- the launcher's checks ---------------------------------------------------------------


def received(c: Cue) -> Cue:
    gw, dev = can_pair()
    (got,) = dev.receive_frames(gw.send(c))
    assert isinstance(got, Cue)
    return got


def test_validator_accepts_a_good_cue_once() -> None:
    v = CueValidator(LID, KEYS)
    c = received(cue())
    assert v.check_cue(c, NOW) is NackReason.NONE
    assert v.check_cue(c, NOW) is NackReason.REPLAY
    assert c.cue_id in v.held
    assert v.highest_sequence == 10


@pytest.mark.parametrize(
    ("make", "now", "reason"),
    [
        (lambda: received(cue()), NOW - 2_000_000_000, NackReason.STALE),
        (lambda: received(cue()), NOW + 5_000_000_000, NackReason.STALE),
        (lambda: received(cue(launcher_id=4)), NOW, NackReason.WRONG_LAUNCHER),
        (lambda: dataclasses.replace(received(cue()), key_id=9), NOW, NackReason.UNKNOWN_KEY),
        (lambda: dataclasses.replace(received(cue()), mac=b""), NOW, NackReason.UNSIGNED),
        (lambda: dataclasses.replace(received(cue()), key_id=0), NOW, NackReason.UNSIGNED),
        (lambda: received(cue(valid_until_ns=NOW - 2_000_000_000)), NOW, NackReason.BAD_WINDOW),
        (lambda: received(cue(valid_until_ns=NOW + 120_000_000_000)), NOW, NackReason.BAD_WINDOW),
    ],
)
def test_validator_nacks(make: object, now: int, reason: NackReason) -> None:
    assert CueValidator(LID, KEYS).check_cue(make(), now) is reason  # type: ignore[operator]


@settings(max_examples=50, deadline=None)
@given(bit=st.integers(0, 64 * 8 - 1))
def test_any_flipped_bit_of_the_signed_bytes_fails_the_mac(bit: int) -> None:
    c = received(cue())
    body = bytearray(c.signed_bytes)
    body[bit // 8] ^= 1 << (bit % 8)
    gw, dev = can_pair()
    _, mac_frame = gw.send(cue())
    out = dev.receive_frames([CanFrame(0x501, bytes(body), True), mac_frame])
    v = CueValidator(LID, KEYS)
    for ev in out:
        if isinstance(ev, Cue):
            # Either the pair no longer matches (other sequence/cue id), or the tag fails.
            refused = {
                NackReason.BAD_MAC,
                NackReason.WRONG_LAUNCHER,
                NackReason.UNKNOWN_KEY,
                NackReason.UNSIGNED,
            }
            assert v.check_cue(ev, NOW) in refused
    for ev in dev.expire(NOW + 10**9 + 10**18):
        if isinstance(ev, Cue):
            assert v.check_cue(ev, NOW) is not NackReason.NONE


def test_body_without_its_mac_frame_becomes_an_unsigned_cue() -> None:
    gw, dev = can_pair()
    body, _ = gw.send(cue())
    assert dev.receive_frames([body._replace(timestamp_ns=NOW)]) == []
    assert dev.expire(NOW + 100_000_000) == []
    (late,) = dev.expire(NOW + 300_000_000)
    assert isinstance(late, Cue)
    assert late.mac == b""
    assert CueValidator(LID, KEYS).check_cue(late, NOW) is NackReason.UNSIGNED


def test_not_ready_launcher_nacks_but_consumes_the_sequence() -> None:
    v = CueValidator(LID, KEYS)
    assert v.check_cue(received(cue()), NOW, LauncherState.NOT_READY) is NackReason.NOT_READY
    assert v.check_cue(received(cue()), NOW) is NackReason.REPLAY


def test_a_forged_message_does_not_consume_the_sequence() -> None:
    v = CueValidator(LID, KEYS)
    forged = dataclasses.replace(received(cue(seq=50)), mac=bytes(32))
    assert v.check_cue(forged, NOW) is NackReason.BAD_MAC
    assert v.check_cue(received(cue(seq=20)), NOW) is NackReason.NONE


def test_cancel_checks_and_domain_separation() -> None:
    v = CueValidator(LID, KEYS)
    gw, dev = can_pair()
    assert v.check_cue(received(cue()), NOW) is NackReason.NONE
    (c1,) = dev.receive_frames(gw.send(cancel(seq=11, cue_id=999)))
    (c2,) = dev.receive_frames(gw.send(cancel(seq=12)))
    assert v.check_cancel(c1) is NackReason.UNKNOWN_CUE  # type: ignore[arg-type]
    assert v.check_cancel(c2) is NackReason.NONE  # type: ignore[arg-type]
    assert 1001 not in v.held
    # A cancel's tag never verifies as a cue's (ICD §7: domain separation).
    c = received(cue(seq=13))
    assert v.check_cue(dataclasses.replace(c, mac=c2.mac), NOW) is NackReason.BAD_MAC  # type: ignore[union-attr]


def test_covariance_summary_is_the_ellipsoid_semi_axes() -> None:
    p = np.diag([9.0, 4.0, 1.0, 0.25, 0.04, 0.01])
    assert covariance_summary(p) == pytest.approx((3.0, 1.0, 0.5, 0.1))
    ids = {"launcher_id": 1, "key_id": 1, "cue_id": 1, "system_track_id": 1}
    times = {"time_of_validity_ns": NOW, "valid_from_ns": NOW, "valid_until_ns": NOW + 1}
    c = Cue.from_state(state=np.arange(6.0), covariance=p, **ids, **times)
    assert c.velocity_mps == (3.0, 4.0, 5.0)
    assert c.pos_sigma_max_m == pytest.approx(3.0)

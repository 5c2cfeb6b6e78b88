"""DIS Entity State PDU codec: round trips, hand-built bytes, malformed table, fuzz."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Rejected, Role
from drivers.dis import (
    ESPDU_FIXED_LEN,
    DisCodec,
    EntityState,
    dead_reckoning_for,
    resolve_timestamp,
    timestamp_raw,
)
from hilgw.errors import LocalProtocolError

T0 = 1_700_000_123_456_000_000
CODEC = DisCodec(Role.GATEWAY)

f32 = st.floats(-1e6, 1e6, width=32)
f64 = st.floats(-1e7, 1e7)
u8 = st.integers(0, 255)
etype = st.tuples(u8, u8, st.integers(0, 65535), u8, u8, u8, u8)

entities = st.builds(
    EntityState,
    entity_id=st.tuples(st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535)),
    force_id=u8,
    entity_type=etype,
    alt_entity_type=etype,
    location_m=st.tuples(f64, f64, f64),
    velocity_mps=st.tuples(f32, f32, f32),
    orientation_rad=st.tuples(f32, f32, f32),
    appearance=st.integers(0, 2**32 - 1),
    dead_reckoning_algorithm=u8,
    dead_reckoning_other=st.binary(min_size=15, max_size=15),
    dr_linear_acceleration_mps2=st.tuples(f32, f32, f32),
    dr_angular_velocity_radps=st.tuples(f32, f32, f32),
    marking=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=11),
    capabilities=st.integers(0, 2**32 - 1),
    exercise_id=u8,
    timestamp_raw=st.integers(0, 2**32 - 1).map(lambda v: v & ~1),  # relative stamps: t_ns stays None
    variable_parameters=st.lists(st.binary(min_size=16, max_size=16), max_size=3).map(tuple),
    protocol_version=st.sampled_from([6, 7]),
)


@settings(max_examples=100, deadline=None)
@given(entities)
def test_round_trip_exact(ev: EntityState) -> None:
    data = CODEC.send(ev)
    assert len(data) == ESPDU_FIXED_LEN + 16 * len(ev.variable_parameters)
    assert struct.unpack_from(">H", data, 8)[0] == len(data)  # length field computed
    assert data[2] == 1
    assert data[3] == 1
    (back,) = CODEC.receive_datagram(data, T0)
    assert back == ev  # float32 inputs are exact in float32


def hand_built_espdu(n_vp: int = 0, version: int = 7, pdu_type: int = 1, length: int | None = None) -> bytes:
    """An ESPDU packed field by field from IEEE 1278.1-2012 §7.2.2 / Table 134, not with the codec."""
    total = 144 + 16 * n_vp if length is None else length
    out = struct.pack(">BBBBIHBB", version, 9, pdu_type, 1, (1000 << 1) | 1, total, 0, 0)
    out += struct.pack(">HHH", 11, 22, 33)  # entity ID
    out += struct.pack(">BB", 2, n_vp)  # force ID opposing, variable parameter count
    out += struct.pack(">BBHBBBB", 1, 2, 225, 3, 4, 5, 6)  # entity type: platform, air, USA, ...
    out += struct.pack(">BBHBBBB", 0, 0, 0, 0, 0, 0, 0)  # alternative entity type
    out += struct.pack(">fff", 250.0, -10.5, 0.25)  # linear velocity
    out += struct.pack(">ddd", 4_517_590.878, 100_000.5, 4_487_348.409)  # location ECEF
    out += struct.pack(">fff", 0.5, -0.25, 0.125)  # orientation psi theta phi
    out += struct.pack(">I", 0x00010000)  # appearance
    out += struct.pack(">B", 4) + bytes(15)  # DRM(R,V,W)
    out += struct.pack(">fff", 0.0, 0.0, -9.75) + struct.pack(">fff", 0.0, 0.0, 0.01)
    out += struct.pack(">B", 1) + b"TARGET01".ljust(11, b"\0")  # marking ASCII
    out += struct.pack(">I", 0)  # capabilities
    out += b"".join(bytes([1]) + bytes(range(15)) for _ in range(n_vp))
    return out


def test_hand_built_pdu_decodes_field_by_field() -> None:
    (ev,) = CODEC.receive_datagram(hand_built_espdu(n_vp=1), T0)
    assert isinstance(ev, EntityState)
    assert ev.entity_id == (11, 22, 33)
    assert ev.force_id == 2
    assert ev.exercise_id == 9
    assert ev.entity_type == (1, 2, 225, 3, 4, 5, 6)
    assert ev.velocity_mps == (250.0, -10.5, 0.25)
    assert ev.location_m == (4_517_590.878, 100_000.5, 4_487_348.409)
    assert ev.orientation_rad == (0.5, -0.25, 0.125)
    assert ev.dead_reckoning_algorithm == 4
    assert ev.dr_linear_acceleration_mps2 == (0.0, 0.0, -9.75)
    assert ev.marking == "TARGET01"
    assert ev.variable_parameters == (bytes([1]) + bytes(range(15)),)
    assert ev.timestamp_absolute
    assert ev.timestamp_s == pytest.approx(1000 * 3600 / 2**31)


def test_timestamp_resolves_to_the_nearest_hour() -> None:
    raw = timestamp_raw(T0)
    assert raw & 1
    assert abs(resolve_timestamp(raw, T0 + 10**9) - T0) < 2000  # 3600/2^31 s ~ 1.7 us
    hour = 3_600_000_000_000
    just_before = T0 - T0 % hour - 10**8
    assert abs(resolve_timestamp(timestamp_raw(just_before), just_before + 3 * 10**8) - just_before) < 2000


GOOD = hand_built_espdu()


@pytest.mark.parametrize(
    ("datagram", "reasons", "n_good"),
    [
        pytest.param(GOOD[:100], ["truncated"], 0, id="truncated-body"),
        pytest.param(GOOD + GOOD[:8], ["truncated"], 1, id="trailing-partial-header"),
        pytest.param(hand_built_espdu(version=5) + GOOD, ["version"], 1, id="version-5"),
        pytest.param(hand_built_espdu(pdu_type=2) + GOOD, ["unsupported_pdu"], 1, id="fire-pdu"),
        pytest.param(
            hand_built_espdu(n_vp=1, length=144)[:144] + GOOD, ["length"], 1, id="length-vs-vp-count"
        ),
        pytest.param(hand_built_espdu(length=11)[:144], ["length"], 0, id="length-below-header"),
        pytest.param(hand_built_espdu(length=200) + GOOD[:40], ["truncated"], 0, id="length-past-datagram"),
        pytest.param(
            GOOD[: 12 + 0].replace(b"\x00\x90", b"\x00\x0c", 1) + GOOD, ["length"], 1, id="header-only-espdu"
        ),
    ],
)
def test_malformed_inputs(datagram: bytes, reasons: list[str], n_good: int) -> None:
    got = CODEC.receive_datagram(datagram, T0)
    assert [e.reason for e in got if isinstance(e, Rejected)] == reasons
    good = [e for e in got if isinstance(e, EntityState)]
    assert len(good) == n_good
    assert all(g.entity_id == (11, 22, 33) for g in good)


def test_non_finite_location_is_rejected() -> None:
    bad = bytearray(GOOD)
    struct.pack_into(">d", bad, 48, float("nan"))
    (rej,) = CODEC.receive_datagram(bytes(bad), T0)
    assert isinstance(rej, Rejected)
    assert rej.reason == "decode"


def test_bundled_pdus_and_every_prefix() -> None:
    data = GOOD + CODEC.send(EntityState((1, 2, 3)))
    assert len([e for e in CODEC.receive_datagram(data, T0) if isinstance(e, EntityState)]) == 2
    for i in range(len(data)):
        for e in CODEC.receive_datagram(data[:i], T0):
            assert isinstance(e, EntityState | Rejected)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for e in CODEC.receive_datagram(data, T0):
        assert isinstance(e, EntityState | Rejected)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=132, max_size=132))
def test_fuzz_body_behind_valid_header(body: bytes) -> None:
    for e in CODEC.receive_datagram(GOOD[:12] + body, T0):
        assert isinstance(e, EntityState) or e.reason in {"decode", "length"}  # VP count vs length


def test_encode_refuses_bad_values() -> None:
    with pytest.raises(LocalProtocolError):
        CODEC.send(EntityState((1, 2, 3), marking="TOO LONG MARKING"))
    with pytest.raises(LocalProtocolError):
        CODEC.send(EntityState((1, 2, 70000)))
    with pytest.raises(LocalProtocolError):
        CODEC.send(EntityState((1, 2, 3), location_m=(float("inf"), 0.0, 0.0)))


@pytest.mark.parametrize(
    ("motion", "drm"),
    [
        ({}, 1),  # at rest: Static
        ({"velocity_mps": (250.0, 0.0, 0.0)}, 2),  # moving: DRM(F,P,W)
        ({"velocity_mps": (250.0, 0.0, 0.0), "dr_linear_acceleration_mps2": (0.0, 0.0, -9.8)}, 4),
        ({"dr_angular_velocity_radps": (0.0, 0.0, 0.1)}, 4),  # rotating: DRM(R,V,W)
        ({"velocity_mps": (250.0, 0.0, 0.0), "dead_reckoning_algorithm": 5}, 5),  # explicit wins
    ],
)
def test_dead_reckoning_algorithm_follows_the_motion(motion: dict[str, object], drm: int) -> None:
    """IEEE 1278.1 Annex E: a moving entity is never sent as Static (algorithm 1)."""
    ev = EntityState((1, 2, 3), **motion)  # type: ignore[arg-type]
    assert dead_reckoning_for(ev) == drm
    wire = DisCodec(Role.DEVICE).send(ev)
    assert wire[88] == drm  # PDU octet 88 (docs/icd/dis.md)
    (back,) = CODEC.receive_datagram(wire, T0)
    assert isinstance(back, EntityState)
    assert back.dead_reckoning_algorithm == drm

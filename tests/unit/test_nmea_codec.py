"""NMEA 0183 own-ship codec: round trips, stream framing, malformed table, fuzz."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import NEED_DATA, Rejected, Role
from drivers.nmea import NmeaCodec, OwnShipFix
from hilgw.errors import LocalProtocolError

T0 = 1_700_000_123_456_000_000
DEV = NmeaCodec(Role.DEVICE)
DEG = math.pi / 180

angles = st.floats(0, 2 * math.pi - 1e-4)
small = st.floats(-0.5, 0.5)

fixes = st.one_of(
    st.builds(
        OwnShipFix,
        sentence=st.just("GGA"),
        talker=st.sampled_from(["GP", "GN"]),
        t_ns=st.integers(T0 - 10**13, T0 + 10**13).map(lambda t: t - t % 1_000_000),
        t_rx_ns=st.just(T0),
        lat_rad=st.floats(-1.5, 1.5),
        lon_rad=st.floats(-3.14, 3.14),
        alt_msl_m=st.floats(-100, 9000),
        geoid_sep_m=st.floats(-100, 100),
        fix_quality=st.integers(0, 8),
        num_sats=st.integers(0, 40),
        hdop=st.floats(0, 50),
    ),
    st.builds(
        OwnShipFix,
        sentence=st.just("VTG"),
        talker=st.just("GP"),
        t_ns=st.just(T0),
        t_rx_ns=st.just(T0),
        course_rad=angles,
        speed_mps=st.floats(0, 40),
    ),
    st.builds(
        OwnShipFix,
        sentence=st.just("HDT"),
        talker=st.just("HE"),
        t_ns=st.just(T0),
        t_rx_ns=st.just(T0),
        heading_rad=angles,
    ),
    st.builds(
        OwnShipFix,
        sentence=st.just("PASHR"),
        talker=st.just("P"),
        t_ns=st.integers(T0 - 10**13, T0 + 10**13).map(lambda t: t - t % 1_000_000),
        t_rx_ns=st.just(T0),
        heading_rad=angles,
        roll_rad=small,
        pitch_rad=small,
        heave_m=st.floats(-5, 5),
    ),
)


def _close(a: float | None, b: float | None, tol: float) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= tol)


@settings(max_examples=120, deadline=None)
@given(fixes)
def test_round_trip(fix: OwnShipFix) -> None:
    line = DEV.send(fix)
    assert line.endswith(b"\r\n")
    assert b"*" in line
    (back,) = NmeaCodec(Role.GATEWAY).receive_datagram(line, T0)
    assert isinstance(back, OwnShipFix)
    assert back.sentence == fix.sentence
    assert back.t_ns == fix.t_ns
    assert _close(back.lat_rad, fix.lat_rad, 1e-6 / 60 * DEG)  # 6 decimals of minutes
    assert _close(back.lon_rad, fix.lon_rad, 1e-6 / 60 * DEG)
    assert _close(back.alt_msl_m, fix.alt_msl_m, 1e-3)
    assert back.fix_quality == fix.fix_quality
    assert back.num_sats == fix.num_sats
    assert _close(back.course_rad, fix.course_rad, 1e-3 * DEG)
    assert _close(back.speed_mps, fix.speed_mps, 1e-3)
    h = None if back.heading_rad is None else back.heading_rad % (2 * math.pi)
    assert _close(h, fix.heading_rad, 1e-3 * DEG) or _close(
        h, (fix.heading_rad or 0) - 2 * math.pi, 1e-3 * DEG
    )
    assert _close(back.roll_rad, fix.roll_rad, 1e-3 * DEG)
    assert _close(back.pitch_rad, fix.pitch_rad, 1e-3 * DEG)


def nmea(body: str) -> bytes:
    """A sentence with its checksum (XOR of the characters between $ and *, NMEA 0183 §5.3.1)."""
    cs = 0
    for ch in body.encode():
        cs ^= ch
    return f"${body}*{cs:02X}\r\n".encode()


GGA = nmea("GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
HDT = DEV.send(OwnShipFix("HDT", "HE", T0, T0, heading_rad=1.0))


def test_known_sentence_values() -> None:
    (fix,) = NmeaCodec(Role.GATEWAY).receive_datagram(GGA, T0)
    assert isinstance(fix, OwnShipFix)
    assert fix.lat_rad == pytest.approx((48 + 7.038 / 60) * DEG)
    assert fix.lon_rad == pytest.approx((11 + 31.0 / 60) * DEG)
    assert fix.alt_msl_m == 545.4
    assert fix.geoid_sep_m == 46.9
    assert fix.num_sats == 8
    assert fix.t_ns % 86_400_000_000_000 == (12 * 3600 + 35 * 60 + 19) * 10**9


def test_stream_byte_by_byte_and_junk() -> None:
    gw = NmeaCodec(Role.GATEWAY)
    stream = b"\x00\xffjunk\r\n" + GGA + HDT + b"$GPGGA,bad" + b"\r\n" + HDT
    events: list[object] = []
    for i in range(len(stream)):
        gw.receive_data(stream[i : i + 1], T0)
        while (ev := gw.next_event()) is not NEED_DATA:
            events.append(ev)
    kinds = [
        e.sentence if isinstance(e, OwnShipFix) else e.reason
        for e in events
        if isinstance(e, OwnShipFix | Rejected)
    ]
    assert kinds == ["decode", "GGA", "HDT", "checksum", "HDT"]


def test_overlong_line_is_dropped_whole() -> None:
    gw = NmeaCodec(Role.GATEWAY)
    gw.receive_data(b"$GP" + b"A" * 300, T0)
    first = gw.next_event()
    assert isinstance(first, Rejected)
    assert first.reason == "too_long"
    gw.receive_data(b"tail of the long line\r\n" + HDT, T0)
    second = gw.next_event()
    assert isinstance(second, OwnShipFix)
    assert second.sentence == "HDT"
    assert gw.next_event() is NEED_DATA


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(
            GGA[:-3] + (b"0" if GGA[-3:-2] != b"0" else b"1") + b"\r\n", "checksum", id="bad-checksum"
        ),
        pytest.param(GGA.split(b"*")[0] + b"\r\n", "checksum", id="missing-checksum"),
        pytest.param(
            nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
            "unknown_sentence",
            id="rmc-not-handled",
        ),
        pytest.param(nmea("GPXYZ,1,2"), "unknown_sentence", id="unknown-talker-type"),
        pytest.param(
            nmea("GPGGA,123519,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
            "decode",
            id="bad-hemisphere",
        ),
        pytest.param(b"\xff\xfe$GP\xff\r\n", "decode", id="non-ascii"),
        pytest.param(b"no dollar here\r\n", "decode", id="no-start"),
    ],
)
def test_malformed_lines(line: bytes, reason: str) -> None:
    gw = NmeaCodec(Role.GATEWAY)
    got = gw.receive_datagram(HDT + line + HDT, T0)
    assert [e.reason if isinstance(e, Rejected) else e.sentence for e in got] == ["HDT", reason, "HDT"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    gw = NmeaCodec(Role.GATEWAY)
    for e in gw.receive_datagram(data, T0):
        assert isinstance(e, OwnShipFix | Rejected)
    gw.receive_data(data, T0)
    while (ev := gw.next_event()) is not NEED_DATA:
        assert isinstance(ev, OwnShipFix | Rejected)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["GGA", "VTG", "HDT"]),
    st.lists(st.text(alphabet="0123456789.-NSEWTMK", max_size=8), max_size=15),
)
def test_fuzz_fields_with_valid_checksum(kind: str, fields: list[str]) -> None:
    line = nmea(f"GP{kind}," + ",".join(fields))
    for e in NmeaCodec(Role.GATEWAY).receive_datagram(line, T0):
        assert isinstance(e, OwnShipFix) or e.reason == "decode"


def test_send_refuses_gateway_role_and_nan() -> None:
    with pytest.raises(LocalProtocolError):
        NmeaCodec(Role.GATEWAY).send(OwnShipFix("HDT", "HE", T0, T0, heading_rad=1.0))
    with pytest.raises(LocalProtocolError):
        DEV.send(OwnShipFix("HDT", "HE", T0, T0, heading_rad=math.nan))
    with pytest.raises(LocalProtocolError):
        OwnShipFix("RMC", "GP", T0, T0)

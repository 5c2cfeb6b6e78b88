"""ASTERIX codec: round trips, libasterix cross-check, malformed-input table, fuzz."""

from __future__ import annotations

import math

import asterix.generated as gen
import pytest
from asterix.base import Bits, RawDatablock
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.asterix import (
    AsterixCodec,
    ServiceMessage034,
    ServiceMessage065,
    SystemTrack062,
    SystemTrackBatch,
    TargetReport048,
    TargetReportBatch,
    timeofday,
)
from drivers.asterix.events import AsterixRecordEvent
from drivers.base import Rejected, Role
from hilgw.errors import LocalProtocolError

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
DEV = AsterixCodec(Role.DEVICE)
GW = AsterixCodec(Role.GATEWAY)
C62 = gen.Cat_062_1_21
C48 = gen.Cat_048_1_32

# LSBs of the items (CAT062 ed. 1.21, CAT048 ed. 1.32), for round-trip tolerances.
LAT_LSB = 180 / 2**25 * math.pi / 180
NM = 1852.0


def track(**kw: object) -> SystemTrack062:
    base: dict[str, object] = dict(sac=1, sic=2, track_number=300, t_ns=T0, lat_rad=0.7, lon_rad=0.2)
    base.update(kw)
    return SystemTrack062(**base)  # type: ignore[arg-type]


def plot(**kw: object) -> TargetReport048:
    base: dict[str, object] = dict(sac=3, sic=4, t_ns=T0, range_m=50_000.0, azimuth_rad=1.0)
    base.update(kw)
    return TargetReport048(**base)  # type: ignore[arg-type]


tracks = st.builds(
    SystemTrack062,
    sac=st.integers(0, 255),
    sic=st.integers(0, 255),
    track_number=st.integers(0, 65535),
    t_ns=st.integers(T0 - 4 * 10**13, T0 + 4 * 10**13),  # within 11 h of the receive time
    lat_rad=st.floats(-1.5, 1.5),
    lon_rad=st.floats(-3.1, 3.1),
    vx_mps=st.floats(-8000, 8000),
    vy_mps=st.floats(-8000, 8000),
    # The standard's ranges: I062/136 FL -15..1500, I062/130 -1,500..150,000 ft (CAT062 ed. 1.21).
    flight_level_m=st.none() | st.floats(-457, 45_700),
    geo_alt_m=st.none() | st.floats(-457, 45_700),
    measured_height_m=st.none() | st.floats(-9000, 240_000),
    altitude_source=st.integers(0, 7),
    sigma_x_m=st.none() | st.floats(0, 30000),
    sigma_y_m=st.none() | st.floats(0, 30000),
    tentative=st.booleans(),
    coasting=st.booleans(),
    ended=st.booleans(),
    simulated=st.booleans(),
    monosensor=st.booleans(),
)

plots = st.builds(
    TargetReport048,
    sac=st.integers(0, 255),
    sic=st.integers(0, 255),
    t_ns=st.integers(T0 - 4 * 10**13, T0 + 4 * 10**13),  # within 11 h of the receive time
    range_m=st.floats(0, 255 * NM),
    azimuth_rad=st.floats(0, 2 * math.pi - 1e-3),
    height_m=st.none() | st.floats(-2000, 30000),
    track_number=st.none() | st.integers(0, 4095),
    ground_speed_mps=st.floats(0, 3000),
    heading_rad=st.floats(0, 6.28),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(tracks | plots, min_size=1, max_size=6))
def test_round_trip_within_one_lsb(events: list[SystemTrack062 | TargetReport048]) -> None:
    data = DEV.send(events)
    got = GW.receive_datagram(data, T0)
    assert len(got) == len(events)
    for sent, back in zip(events, got, strict=True):
        assert type(back) is type(sent)
        assert back.sac == sent.sac
        assert back.sic == sent.sic
        # the time of day carries no date: it resolves near the receive time
        assert abs(back.t_ns - sent.t_ns) <= timeofday.TOD_LSB_NS // 2
        if isinstance(sent, SystemTrack062):
            assert isinstance(back, SystemTrack062)
            assert back.track_number == sent.track_number
            assert back.lat_rad == pytest.approx(sent.lat_rad, abs=LAT_LSB)
            assert back.lon_rad == pytest.approx(sent.lon_rad, abs=LAT_LSB)
            assert back.vx_mps == pytest.approx(sent.vx_mps, abs=0.125)
            assert (back.flight_level_m is None) == (sent.flight_level_m is None)
            assert (back.geo_alt_m is None) == (sent.geo_alt_m is None)
            if sent.measured_height_m is None:
                assert back.measured_height_m is None
            else:
                assert back.measured_height_m == pytest.approx(sent.measured_height_m, abs=12.5 * 0.3048)
            # I062/080 SRC is the source of I062/130: "no source" (0) without it.
            assert back.altitude_source == (sent.altitude_source if sent.geo_alt_m is not None else 0)
            assert (back.tentative, back.coasting, back.ended, back.simulated, back.monosensor) == (
                sent.tentative,
                sent.coasting,
                sent.ended,
                sent.simulated,
                sent.monosensor,
            )
        else:
            assert isinstance(back, TargetReport048)
            assert back.range_m == pytest.approx(sent.range_m, abs=NM / 512)
            assert back.azimuth_rad == pytest.approx(sent.azimuth_rad, abs=2 * math.pi / 2**17)
            assert back.track_number == sent.track_number
            assert (back.height_m is None) == (sent.height_m is None)


@settings(max_examples=40, deadline=None)
@given(st.lists(tracks, min_size=1, max_size=5))
def test_fast_walker_agrees_with_libasterix(events: list[SystemTrack062]) -> None:
    """Our decode of every item equals libasterix's strict parse of the same bytes."""
    data = DEV.send(events)
    blocks = RawDatablock.parse(Bits.from_bytes(data))
    assert not isinstance(blocks, ValueError)
    recs = C62.cv_uap.parse(blocks[0].get_raw_records())
    assert not isinstance(recs, ValueError)
    (batch,) = GW.receive_datagram_batch(data, events[0].t_ns)
    assert isinstance(batch, SystemTrackBatch)
    for rec, row in zip(recs, batch.rows, strict=True):
        i105 = rec.get_item("105")
        assert i105 is not None
        lat = i105.variation.get_item("LAT").variation.content.as_quantity("°")
        assert math.radians(lat) == pytest.approx(row["lat_rad"], abs=1e-12)
        i040 = rec.get_item("040")
        assert i040 is not None
        assert i040.as_uint() == row["track_number"]
        i080 = rec.get_item("080")
        assert i080 is not None
        cnf = i080.variation.get_item("CNF")
        assert cnf is not None
        assert bool(cnf.as_uint()) == row["tentative"]
        tse = i080.variation.get_item("TSE")
        assert bool(tse.as_uint() if tse is not None else 0) == row["ended"]
        cst = i080.variation.get_item("CST")
        assert bool(cst.as_uint() if cst is not None else 0) == row["coasting"]
        i500 = rec.get_item("500")
        if i500 is not None and i500.variation.get_item("APC") is not None:
            apc = i500.variation.get_item("APC")
            assert apc is not None
            assert apc.variation.get_item("Y").variation.content.as_quantity("m") == row["sigma_y_m"]


def test_batch_rows_equal_events_and_services_keep_order() -> None:
    evs: list[AsterixRecordEvent] = [
        track(),
        plot(height_m=1000.0),
        ServiceMessage034(3, 4, 1, T0),
        track(track_number=9),
    ]
    data = DEV.send([*evs, ServiceMessage065(1, 2, 5, 1, T0, nogo=2, batch_number=3)])
    got = GW.receive_datagram_batch(data, T0)
    assert [type(e) for e in got] == [
        ServiceMessage034,
        ServiceMessage065,
        SystemTrackBatch,
        TargetReportBatch,
    ]
    tracks_b = got[2]
    assert isinstance(tracks_b, SystemTrackBatch)
    assert list(tracks_b.rows["track_number"]) == [300, 9]
    assert math.isnan(tracks_b.rows["x_m"][0])  # absent I062/100 is NaN in the batch
    assert got[1] == ServiceMessage065(1, 2, 5, 1, T0, nogo=2, batch_number=3)


def test_time_of_day_resolves_across_midnight() -> None:
    midnight = T0 - T0 % timeofday.DAY_NS
    before = midnight - 100_000_000  # 23:59:59.9
    data = DEV.send(track(t_ns=before))
    (ev,) = GW.receive_datagram(data, midnight + 200_000_000)  # received 00:00:00.2 next day
    assert isinstance(ev, SystemTrack062)
    assert abs(ev.t_ns - before) <= timeofday.TOD_LSB_NS
    after = midnight + 50_000_000
    (ev2,) = GW.receive_datagram(DEV.send(track(t_ns=after)), midnight - 300_000_000)
    assert isinstance(ev2, SystemTrack062)
    assert abs(ev2.t_ns - after) <= timeofday.TOD_LSB_NS


def _block(cat: int, body: bytes) -> bytes:
    return bytes([cat]) + (len(body) + 3).to_bytes(2, "big") + body


GOOD48 = DEV.send(plot())  # one CAT048 block, one record
GOOD48_REC = GOOD48[3:]
# A CAT048 record with only I048/010 (FSPEC 0x80): delimitable but missing I048/140 and I048/040.
NO_POS = bytes([0x80, 1, 2])
# FSPEC bit of FRN 27 set in CAT062 ... use CAT048 spare-free: CAT062 FRN 2 is spare.
SPARE_FRN_062 = bytes([0x40])  # FRN 2 of CAT062 is a spare slot


@pytest.mark.parametrize(
    ("datagram", "reasons", "n_good"),
    [
        pytest.param(
            _block(48, GOOD48_REC + NO_POS + GOOD48_REC), ["missing_item"], 2, id="missing-item-mid-block"
        ),
        pytest.param(_block(99, b"\x00\x01") + GOOD48, ["unknown_category"], 1, id="unknown-category"),
        pytest.param(GOOD48 + GOOD48[:-2], ["truncated"], 1, id="truncated-last-block"),
        pytest.param(GOOD48 + b"\x30", ["truncated"], 1, id="lone-category-octet"),
        pytest.param(
            _block(48, GOOD48_REC + GOOD48_REC[:5]) + GOOD48, ["truncated"], 2, id="record-cut-in-block"
        ),
        pytest.param(_block(62, SPARE_FRN_062 + b"\x00" * 8) + GOOD48, ["decode"], 1, id="spare-frn"),
        pytest.param(_block(48, b"\x00") + GOOD48, ["decode"], 1, id="empty-fspec"),
        pytest.param(b"\x30\x00\x02" + GOOD48, ["truncated"], 0, id="len-below-3"),
        pytest.param(
            _block(
                48, bytes([0xD0, 1, 2]) + (86400 * 128).to_bytes(3, "big") + b"\x00\x00\x00\x00" + GOOD48_REC
            ),
            ["decode"],
            1,
            id="time-of-day-24h",
        ),
    ],
)
def test_malformed_inputs(datagram: bytes, reasons: list[str], n_good: int) -> None:
    got = GW.receive_datagram(datagram, T0)
    rej = [e for e in got if isinstance(e, Rejected)]
    good = [e for e in got if isinstance(e, TargetReport048)]
    assert [r.reason for r in rej] == reasons
    assert len(good) == n_good
    assert all(g == GW.receive_datagram(GOOD48, T0)[0] for g in good)
    err = rej[0].error
    assert err.offset is not None
    assert 0 <= err.offset <= len(datagram)
    assert "CAT" in str(err)


def test_missing_item_names_item_and_record_index() -> None:
    got = GW.receive_datagram(_block(48, GOOD48_REC + NO_POS), T0)
    rej = got[1]
    assert isinstance(rej, Rejected)
    assert rej.error.field == "140"
    assert "record 1" in str(rej.error)
    assert rej.raw == NO_POS


def test_every_prefix_never_raises_and_keeps_whole_blocks() -> None:
    data = DEV.send([track(), plot(), track(track_number=5)])
    for i in range(len(data) + 1):
        got = GW.receive_datagram(data[:i], T0)
        assert all(isinstance(e, SystemTrack062 | TargetReport048 | Rejected) for e in got)
    assert len(GW.receive_datagram(data, T0)) == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for fn in (GW.receive_datagram, GW.receive_datagram_batch):
        for ev in fn(data, T0):
            assert isinstance(
                ev,
                SystemTrack062
                | TargetReport048
                | ServiceMessage034
                | ServiceMessage065
                | Rejected
                | SystemTrackBatch
                | TargetReportBatch,
            )


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.sampled_from([34, 48, 62, 65]))
def test_fuzz_records_inside_valid_blocks(body: bytes, cat: int) -> None:
    for ev in GW.receive_datagram(_block(cat, body), T0):
        assert not isinstance(ev, Rejected) or ev.reason in {"missing_item", "truncated", "decode"}


def test_encode_refuses_out_of_range_and_wrong_role() -> None:
    with pytest.raises(LocalProtocolError):
        DEV.send(plot(range_m=300 * NM))  # I048/040 RHO tops out at 256 NM
    with pytest.raises(LocalProtocolError):
        DEV.send(track(track_number=70000))
    # Within the field's width, outside the standard's range (CAT062 ed. 1.21): refused, not sent.
    with pytest.raises(LocalProtocolError, match="I062/130"):
        DEV.send(track(geo_alt_m=150_001 * 0.3048))  # s16 of 6.25 ft would hold 204,793 ft
    with pytest.raises(LocalProtocolError, match="I062/136"):
        DEV.send(track(flight_level_m=1501 * 100 * 0.3048))
    DEV.send(track(geo_alt_m=150_000 * 0.3048, flight_level_m=-15 * 100 * 0.3048))  # the limits are in
    with pytest.raises(LocalProtocolError):
        GW.send(track())
    with pytest.raises(LocalProtocolError):
        DEV.receive_datagram(GOOD48, T0)
    with pytest.raises(LocalProtocolError):
        track(lat_rad=math.nan)


# ---------------------------------------------------------------------- fast path (same-layout runs)
#
# The gateway codec decodes runs of same-layout records as one strided slice
# (drivers/asterix/layout.py same_layout_run); it must give exactly the events
# of walking every record (fast_path=False), rejects included.

SLOW = AsterixCodec(Role.GATEWAY, fast_path=False)
L48 = GW.layouts[48]


def rec48(items: dict[str, bytes]) -> bytes:
    """A CAT048 record from raw item bytes: the FSPEC is built from the item names."""
    frns = sorted(L48.frn_of[name] for name in items)
    n_oct = (frns[-1] + 6) // 7
    fspec = bytearray(n_oct)
    for frn in frns:
        fspec[(frn - 1) // 7] |= 0x80 >> ((frn - 1) % 7)
    for i in range(n_oct - 1):
        fspec[i] |= 1  # FX
    by_frn = {L48.frn_of[name]: data for name, data in items.items()}
    return bytes(fspec) + b"".join(by_frn[f] for f in frns)


def _fx_octets(n: int, fill: int) -> bytes:
    """``n`` octets of an FX-extended field: FX set on all but the last."""
    return bytes(((fill << 1) & 0xFE) | (1 if i < n - 1 else 0) for i in range(n))


# The optional items of a record "shape", with variable-length ones drawn per record.
SHAPE_ITEMS = ("020", "110", "161", "200", "130", "250", "030", "120", "SP")


@st.composite
def record48(draw: st.DrawFn, shape: frozenset[str]) -> bytes:
    byte = st.integers(0, 255)
    items: dict[str, bytes] = {
        "010": bytes([draw(byte), draw(byte)]),
        # Mostly valid times of day, sometimes 24 h or more (a per-record "decode" reject).
        "140": draw(st.integers(0, 86400 * 128 - 1) | st.integers(86400 * 128, 2**24 - 1)).to_bytes(3, "big"),
        "040": draw(st.binary(min_size=4, max_size=4)),
    }
    if "020" in shape:
        items["020"] = _fx_octets(draw(st.integers(1, 3)), draw(byte))
    for name, size in (("110", 2), ("161", 2), ("200", 4)):
        if name in shape:
            items[name] = draw(st.binary(min_size=size, max_size=size))
    if "130" in shape:  # compound: sub-FSPEC, then one octet per present sub-field
        sub = draw(st.integers(1, 127)) << 1
        items["130"] = bytes([sub]) + draw(
            st.binary(min_size=bin(sub).count("1"), max_size=bin(sub).count("1"))
        )
    if "250" in shape:  # repetitive: count, then 8-octet elements
        k = draw(st.integers(0, 2))
        items["250"] = bytes([k]) + draw(st.binary(min_size=8 * k, max_size=8 * k))
    if "030" in shape:  # FX-repetitive, 1-octet elements
        items["030"] = _fx_octets(draw(st.integers(1, 3)), draw(byte))
    if "120" in shape:  # compound with a repetitive sub-field (CAL, then RDS)
        k = draw(st.integers(0, 2))
        items["120"] = bytes([0x40]) + bytes([k]) + draw(st.binary(min_size=6 * k, max_size=6 * k))
    if "SP" in shape:  # explicit: the length octet counts itself
        n = draw(st.integers(1, 4))
        items["SP"] = bytes([n]) + draw(st.binary(min_size=n - 1, max_size=n - 1))
    return rec48(items)


# Records that break a run: one missing mandatory items (the block goes on), one
# that cannot be delimited (FRN 27 "SP" with explicit length 0: the block ends).
BAD_MISSING = rec48({"010": b"\x01\x02", "161": b"\x00\x07"})
BAD_UNDELIMITED = rec48({"010": b"\x01\x02", "140": b"\x00\x00\x01", "040": b"\x00" * 4, "SP": b"\x00"})


@st.composite
def blocks48(draw: st.DrawFn) -> list[bytes]:
    shapes = draw(st.lists(st.frozensets(st.sampled_from(SHAPE_ITEMS)), min_size=1, max_size=3))
    recs: list[bytes] = []
    for _ in range(draw(st.integers(1, 4))):  # runs of one shape (with per-record lengths drawn)
        shape = draw(st.sampled_from(shapes))
        recs += draw(st.lists(record48(shape), min_size=1, max_size=12))
    return recs


def _summary(events: list[object]) -> list[object]:
    out: list[object] = []
    for e in events:
        if isinstance(e, Rejected):
            out.append((e.reason, str(e.error), e.error.field, e.error.offset, e.raw))
        elif isinstance(e, TargetReportBatch | SystemTrackBatch):
            out.append((type(e), e.rows.dtype, e.rows.tobytes()))  # bitwise, NaN included
        else:
            out.append(e)
    return out


def _agree(datagram: bytes) -> None:
    assert _summary(list(GW.receive_datagram_batch(datagram, T0))) == _summary(
        list(SLOW.receive_datagram_batch(datagram, T0))
    )
    assert _summary(list(GW.receive_datagram(datagram, T0))) == _summary(
        list(SLOW.receive_datagram(datagram, T0))
    )


@settings(max_examples=150, deadline=None)
@given(blocks48(), st.integers(0, 3), st.data())
def test_fast_path_equals_walker_on_random_blocks(recs: list[bytes], bad: int, data: st.DataObject) -> None:
    """Random valid CAT048 blocks (variable items, bad times of day), optionally one bad record mid-block."""
    if bad and len(recs) > 1:
        at = data.draw(st.integers(1, len(recs) - 1))
        recs = [*recs[:at], (b"", BAD_MISSING, BAD_UNDELIMITED)[bad - 1] or recs[at][:-1], *recs[at:]]
    body = b"".join(recs)
    _agree(_block(48, body) + DEV.send([track(), plot()]))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(tracks, min_size=1, max_size=8) | st.lists(plots, min_size=1, max_size=8), max_size=4)
)
def test_fast_path_equals_walker_on_encoded_datagrams(
    runs: list[list[SystemTrack062 | TargetReport048]],
) -> None:
    """Emulator output (CAT062 with FX/compound items, CAT048) decodes the same either way."""
    events = [e for run in runs for e in run]
    if events:
        _agree(DEV.send(events))


@pytest.mark.parametrize(
    ("item", "usual", "odd"),
    [
        pytest.param("020", b"\x20", b"\x21\x02", id="extended"),
        pytest.param("130", b"\x80\x05", b"\xc0\x05\x06", id="compound"),
        pytest.param("250", b"\x01" + b"\x00" * 8, b"\x02" + b"\x00" * 16, id="repetitive"),
        pytest.param("030", b"\x02", b"\x03\x04", id="repetitive-fx"),
        pytest.param("SP", b"\x02\x00", b"\x03\x00\x00", id="explicit"),
    ],
)
def test_same_layout_run_stops_at_the_first_different_layout(item: str, usual: bytes, odd: bytes) -> None:
    """Same FSPEC, but one variable-length item one record longer: the run ends there."""
    from drivers.asterix.layout import same_layout_run, walk_record

    base = {"010": b"\x01\x02", "140": b"\x00\x10\x00", "040": b"\x10\x00\x20\x00", "110": b"\x00\x40"}
    recs = [rec48({**base, item: usual, "161": i.to_bytes(2, "big")}) for i in range(40)]
    recs[17] = rec48({**base, item: odd, "161": b"\x00\x11"})
    body = b"".join(recs)
    pos, nxt = walk_record(body, 0, len(body), L48)
    assert same_layout_run(body, 0, len(body), nxt, pos, L48) == 17
    uniform = b"".join(recs[:17] + recs[18:])
    pos, nxt = walk_record(uniform, 0, len(uniform), L48)
    assert same_layout_run(uniform, 0, len(uniform), nxt, pos, L48) == 39
    _agree(_block(48, body))
    (batch,) = GW.receive_datagram_batch(_block(48, body), T0)
    assert isinstance(batch, TargetReportBatch)
    assert batch.rows["track_number"].tolist() == [*range(17), 0x11, *range(18, 40)]


def test_fast_path_rejects_one_bad_time_and_keeps_the_rest_of_the_run() -> None:
    good = [plot(track_number=i + 1, height_m=1000.0 + i) for i in range(40)]
    dg = bytearray(DEV.send(good))
    rec_len = (len(dg) - 3) // 40
    from drivers.asterix.layout import walk_record

    pos, _ = walk_record(bytes(dg), 3, len(dg), L48)
    tod_at = pos[L48.frn_of["140"]] + 20 * rec_len  # I048/140 of record 20
    dg[tod_at : tod_at + 3] = (86400 * 128).to_bytes(3, "big")
    got = GW.receive_datagram_batch(bytes(dg), T0)
    assert [type(e) for e in got] == [Rejected, TargetReportBatch]
    rej, batch = got
    assert isinstance(rej, Rejected)
    assert rej.reason == "decode"
    assert "record 20" in str(rej.error)
    assert rej.error.field == "140"
    assert rej.error.offset == 3 + 20 * rec_len
    assert isinstance(batch, TargetReportBatch)
    assert batch.rows["track_number"].tolist() == [i + 1 for i in range(40) if i != 20]
    _agree(bytes(dg))

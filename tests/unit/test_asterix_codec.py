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
    flight_level_m=st.none() | st.floats(-1000, 30000),
    geo_alt_m=st.none() | st.floats(-1000, 60000),
    sigma_x_m=st.none() | st.floats(0, 30000),
    sigma_y_m=st.none() | st.floats(0, 30000),
    tentative=st.booleans(),
    coasting=st.booleans(),
    ended=st.booleans(),
    simulated=st.booleans(),
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
            assert (back.tentative, back.coasting, back.ended, back.simulated) == (
                sent.tentative,
                sent.coasting,
                sent.ended,
                sent.simulated,
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
    with pytest.raises(LocalProtocolError):
        GW.send(track())
    with pytest.raises(LocalProtocolError):
        DEV.receive_datagram(GOOD48, T0)
    with pytest.raises(LocalProtocolError):
        track(lat_rad=math.nan)

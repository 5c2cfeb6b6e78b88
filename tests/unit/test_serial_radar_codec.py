"""drivers/serial_radar: the sans-I/O serial radar codec against docs/icd/serial-radar.md."""

from __future__ import annotations

import itertools
import math
import re
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import NEED_DATA, Rejected, Role
from drivers.framing import encode_frame
from drivers.radar import TRACK_BATCH_DTYPE, SensorState, Status, TrackReportBatch
from drivers.serial_radar import SerialRadarCodec, TrackReport
from drivers.serial_radar.events import batch_reports
from drivers.serial_radar.icd import TRACK_SCALED, ScaledField
from hilgw.errors import LocalProtocolError

ICD = Path(__file__).resolve().parents[2] / "docs" / "icd" / "serial-radar.md"
SPEC = {s.attr: s for s in TRACK_SCALED}
SID = 7

# The events of the ICD's worked examples (§7).
EXAMPLE_TRACK = TrackReport(
    sensor_track_id=42,
    sensor_time_ns=1_700_000_000_123_456_789,
    range_m=85_432.17,
    azimuth_rad=math.radians(37.5),
    elevation_rad=math.radians(12.25),
    range_rate_mps=-1234.567,
    azimuth_rate_radps=0.0123,
    elevation_rate_radps=-0.0045,
    sigma_range_m=3.5,
    sigma_azimuth_rad=0.0012,
    sigma_elevation_rad=0.0015,
    sigma_range_rate_mps=0.8,
    sigma_azimuth_rate_radps=0.0005,
    sigma_elevation_rate_radps=0.0006,
    quality=0.87,
    rates_valid=True,
    coasting=False,
)
EXAMPLE_STATUS = Status(
    sensor_time_ns=1_700_000_000_000_000_000,
    state=SensorState.OK,
    time_sync_locked=True,
    radiating=True,
    track_count=12,
    uptime_s=3600,
    fault_code=0,
)


def device(first_sequence: int = 0) -> SerialRadarCodec:
    return SerialRadarCodec(Role.DEVICE, sensor_id=SID, first_sequence=first_sequence)


def gateway(sensor_id: int | None = SID) -> SerialRadarCodec:
    return SerialRadarCodec(Role.GATEWAY, sensor_id=sensor_id)


def all_events(codec: SerialRadarCodec) -> list[Any]:
    out: list[Any] = []
    while (ev := codec.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def flat(events: list[Any]) -> list[Any]:
    """Comparable content: batches expanded into reports, rejections as (reason, message, raw)."""
    out: list[Any] = []
    for ev in events:
        if isinstance(ev, TrackReportBatch):
            out.extend(batch_reports(ev))
        elif isinstance(ev, Rejected):
            out.append((ev.reason, str(ev.error), ev.raw))
        else:
            out.append(ev)
    return out


def feed(codec: SerialRadarCodec, data: bytes) -> None:
    """receive_data, except that an empty slice is not end of stream here."""
    if data:
        codec.receive_data(data)


def decode_whole(stream: bytes, *, sensor_id: int | None = SID) -> list[Any]:
    gw = gateway(sensor_id)
    feed(gw, stream)
    return all_events(gw)


def to_array(reports: list[TrackReport]) -> npt.NDArray[np.void]:
    names = TRACK_BATCH_DTYPE.names or ()
    rows = [tuple(0 if n == "sequence" else getattr(r, n) for n in names) for r in reports]
    return np.array(rows, dtype=TRACK_BATCH_DTYPE)


# -- strategies ----------------------------------------------------------------


def field_values(spec: ScaledField) -> st.SearchStrategy[float]:
    if spec.mode == "ceil":  # sigmas: any positive value up to the field's maximum
        return st.floats(0.0, spec.hi * spec.lsb, exclude_min=True)
    return st.floats(spec.lo * spec.lsb, spec.hi * spec.lsb)


@st.composite
def track_reports(draw: st.DrawFn) -> TrackReport:
    rates_valid = draw(st.booleans())
    kw: dict[str, Any] = {
        spec.attr: (draw(field_values(spec)) if rates_valid or not spec.rate else 0.0)
        for spec in TRACK_SCALED
    }
    kw["quality"] = draw(st.floats(0.0, 1.0))
    return TrackReport(
        sensor_track_id=draw(st.integers(0, 2**32 - 1)),
        sensor_time_ns=draw(st.integers(0, 2**63 - 1)),
        rates_valid=rates_valid,
        coasting=draw(st.booleans()),
        **kw,
    )


statuses = st.builds(
    Status,
    sensor_time_ns=st.integers(0, 2**63 - 1),
    state=st.sampled_from(SensorState),
    time_sync_locked=st.booleans(),
    radiating=st.booleans(),
    track_count=st.integers(0, 65535),
    uptime_s=st.integers(0, 2**32 - 1),
    fault_code=st.integers(0, 2**32 - 1),
)
events = st.lists(st.one_of(track_reports(), statuses), min_size=1, max_size=12)


# -- the ICD's worked examples ---------------------------------------------------


def doc_hex(marker: str) -> bytes:
    text = ICD.read_text(encoding="utf-8")
    m = re.search(rf"<!-- example-frame: {marker} -->\s*```text\n(.*?)```", text, re.S)
    assert m, f"no example frame {marker} in {ICD}"
    return bytes.fromhex("".join(line[6:] for line in m.group(1).splitlines()))


def test_icd_examples_are_what_the_codec_sends() -> None:
    dev = device()
    assert dev.send(EXAMPLE_TRACK) == doc_hex("TRACK_REPORT")
    assert dev.send(EXAMPLE_STATUS) == doc_hex("STATUS")


def test_icd_examples_decode_to_the_documented_events() -> None:
    track, status = decode_whole(doc_hex("TRACK_REPORT") + doc_hex("STATUS"))
    assert isinstance(track, TrackReport)
    assert_within_lsb(EXAMPLE_TRACK, track)
    assert track.wire == EXAMPLE_TRACK.wire  # the raw values listed in §7.1
    assert (track.sensor_id, track.sequence) == (SID, 0)
    assert status == replace(EXAMPLE_STATUS, sensor_id=SID, sequence=1)


def test_icd_tables_match_the_code() -> None:
    # Each scaled field's offset in the §5.1 table is the codec's.
    text = ICD.read_text(encoding="utf-8")
    for spec in TRACK_SCALED:
        assert re.search(rf"^\| {spec.offset} \| \d \| [ui]\d+ \| {spec.wire} \|", text, re.M), spec.wire


# -- round trips -------------------------------------------------------------------


def assert_within_lsb(sent: TrackReport, got: TrackReport) -> None:
    for spec in TRACK_SCALED:
        a, b = getattr(sent, spec.attr), getattr(got, spec.attr)
        tol = 1e-9 * max(1.0, abs(a))  # float error of raw × LSB
        if spec.mode == "ceil":  # sigmas rounded up, never down (ICD §2)
            assert -tol <= b - a <= spec.lsb * (1 + 1e-6) + tol, spec.attr
        elif spec.mode == "bam":  # azimuth wraps at 2π
            d = (b - a + math.pi) % (2 * math.pi) - math.pi
            assert abs(d) <= spec.lsb / 2 + tol, spec.attr
        else:
            assert abs(b - a) <= spec.lsb / 2 + tol, spec.attr
    for name in ("sensor_track_id", "sensor_time_ns", "rates_valid", "coasting"):
        assert getattr(sent, name) == getattr(got, name)


@given(track_reports())
def test_track_report_round_trip_within_documented_lsb(report: TrackReport) -> None:
    dev = device()
    frame = dev.send(report)
    (got,) = decode_whole(frame)
    assert isinstance(got, TrackReport)
    assert_within_lsb(report, got)
    assert (got.sensor_id, got.sequence) == (SID, 0)
    # Decoded values are exact multiples of the LSB: re-encoding is lossless.
    assert device().send(got) == frame


@given(statuses)
def test_status_round_trip_is_exact(status: Status) -> None:
    (got,) = decode_whole(device(first_sequence=99).send(status))
    assert got == replace(status, sensor_id=SID, sequence=99)


@given(events)
def test_every_split_and_byte_by_byte_equal_whole(evs: list[TrackReport | Status]) -> None:
    dev = device()
    stream = b"".join(dev.send(e) for e in evs)
    whole = decode_whole(stream)
    assert len(whole) == len(evs)
    for cut in range(0, len(stream) + 1, 7):  # every 7th prefix keeps the run short
        gw = gateway()
        feed(gw, stream[:cut])
        head = all_events(gw)
        feed(gw, stream[cut:])
        assert head + all_events(gw) == whole
    gw = gateway()
    got = []
    for i in range(len(stream)):
        gw.receive_data(stream[i : i + 1])
        got.extend(all_events(gw))
    assert got == whole


def test_every_prefix_yields_a_prefix_of_the_events() -> None:
    dev = device()
    stream = dev.send(EXAMPLE_TRACK) + dev.send(EXAMPLE_STATUS) + dev.send(EXAMPLE_TRACK)
    whole = decode_whole(stream)
    for cut in range(len(stream) + 1):
        assert decode_whole(stream[:cut]) == whole[: len(decode_whole(stream[:cut]))]
        gw = gateway()
        feed(gw, stream[:cut])
        first = all_events(gw)
        feed(gw, stream[cut:])
        assert first + all_events(gw) == whole


def test_trailing_junk_after_good_frames() -> None:
    dev = device()
    stream = dev.send(EXAMPLE_TRACK) + dev.send(EXAMPLE_STATUS)
    gw = gateway()
    gw.receive_data(stream + b"\x13\x37\xff")
    assert len(all_events(gw)) == 2
    gw.receive_data(b"")  # end of stream inside the junk "frame"
    (rej,) = all_events(gw)
    assert isinstance(rej, Rejected)
    assert rej.reason == "truncated"
    with pytest.raises(LocalProtocolError):
        gw.receive_data(b"more")


def test_sequence_increments_across_types_and_wraps() -> None:
    dev = device(first_sequence=2**32 - 2)
    stream = (
        dev.send(EXAMPLE_TRACK)
        + dev.send(EXAMPLE_STATUS)
        + dev.encode_track_batch(to_array([EXAMPLE_TRACK] * 2))
    )
    assert [e.sequence for e in flat(decode_whole(stream))] == [2**32 - 2, 2**32 - 1, 0, 1]
    assert dev.next_sequence == 2


# -- batch path (gateway drain, device encode_track_batch) --------------------------


@given(events, st.lists(st.tuples(st.integers(0, 200), st.binary(max_size=12)), max_size=3))
def test_drain_equals_next_event(evs: list[TrackReport | Status], junk: list[tuple[int, bytes]]) -> None:
    dev = device()
    stream = bytearray(b"".join(dev.send(e) for e in evs))
    for pos, blob in junk:  # splice junk at random places: rejected frames among good ones
        stream[pos:pos] = blob + b"\x00"
    one = decode_whole(bytes(stream))
    gw = gateway()
    gw.receive_data(bytes(stream))
    batched = gw.drain()
    assert gw.drain() == []
    assert flat(batched) == flat(one)
    # Consecutive track reports are coalesced: no two batches are adjacent.
    kinds = [type(e) for e in batched]
    assert TrackReport not in kinds
    assert all(not (a is b is TrackReportBatch) for a, b in itertools.pairwise(kinds))


def test_drain_batches_a_run_and_splits_at_a_bad_row() -> None:
    dev = device()
    good = [replace(EXAMPLE_TRACK, sensor_track_id=i) for i in range(5)]
    frames = [dev.send(r) for r in good]
    payload = bytearray(cobs.decode(frames[2][:-1])[:-2])
    payload[56] = 101  # quality 101 %
    frames[2] = encode_frame(bytes(payload))
    gw = gateway()
    gw.receive_data(b"".join(frames) + dev.send(EXAMPLE_STATUS))
    out = gw.drain()
    assert [type(e).__name__ for e in out] == ["TrackReportBatch", "Rejected", "TrackReportBatch", "Status"]
    first, rej, second, _ = out
    assert isinstance(first, TrackReportBatch)
    assert isinstance(second, TrackReportBatch)
    assert isinstance(rej, Rejected)
    assert first.reports["sensor_track_id"].tolist() == [0, 1]
    assert second.reports["sensor_track_id"].tolist() == [3, 4]
    assert second.reports["sequence"].tolist() == [3, 4]
    assert (rej.reason, rej.error.field, rej.error.offset) == ("range", "quality", 56)
    assert first.reports.dtype == TRACK_BATCH_DTYPE
    assert first.reports["quality"][0] == pytest.approx(0.87)


def test_drain_splits_batches_by_sensor_id_when_not_configured() -> None:
    a = SerialRadarCodec(Role.DEVICE, sensor_id=1)
    b = SerialRadarCodec(Role.DEVICE, sensor_id=2)
    gw = gateway(sensor_id=None)
    gw.receive_data(a.send(EXAMPLE_TRACK) + a.send(EXAMPLE_TRACK) + b.send(EXAMPLE_TRACK))
    out = gw.drain()
    assert all(isinstance(e, TrackReportBatch) for e in out)
    assert [(e.sensor_id, len(e)) for e in out if isinstance(e, TrackReportBatch)] == [(1, 2), (2, 1)]


@given(st.lists(track_reports(), min_size=1, max_size=10), st.integers(0, 2**32 - 1))
def test_encode_track_batch_equals_send_per_row(reports: list[TrackReport], first: int) -> None:
    one_by_one = device(first)
    expected = b"".join(one_by_one.send(r) for r in reports)
    batch = device(first)
    assert batch.encode_track_batch(to_array(reports)) == expected
    assert batch.next_sequence == one_by_one.next_sequence


def test_encode_track_batch_rejects_bad_row_and_sends_nothing() -> None:
    arr = to_array([EXAMPLE_TRACK] * 5)
    arr["elevation_rad"][3] = 2.0
    dev = device()
    with pytest.raises(LocalProtocolError, match=r"row 3 elevation_rad = 2\.0") as exc:
        dev.encode_track_batch(arr)
    assert exc.value.field == "elevation_rad"
    assert dev.next_sequence == 0
    arr = to_array([EXAMPLE_TRACK] * 2)
    arr["sigma_range_m"][1] = math.nan
    with pytest.raises(LocalProtocolError, match="row 1 sigma_range_m = nan is not finite"):
        dev.encode_track_batch(arr)
    with pytest.raises(LocalProtocolError, match="dtype"):
        dev.encode_track_batch(np.zeros(3, dtype=[("x", "f8")]))


# -- malformed input from the peer: each case then a good frame --------------------


def track_payload(**changes: int) -> bytes:
    """The example TRACK_REPORT payload with raw fields overwritten at their ICD offsets."""
    payload = bytearray(cobs.decode(device().send(EXAMPLE_TRACK)[:-1])[:-2])
    layout = {
        "version": ("<B", 0),
        "msg_type": ("<B", 1),
        "sensor_id": ("<H", 2),
        "sensor_time_ns": ("<q", 8),
        "elevation": ("<i", 28),
        "azimuth_rate": ("<i", 36),
        "sigma_range": ("<H", 44),
        "sigma_azimuth_rate": ("<H", 52),
        "quality": ("<B", 56),
        "flags": ("<B", 57),
    }
    for name, value in changes.items():
        fmt, off = layout[name]
        struct.pack_into(fmt, payload, off, value)
    return bytes(payload)


def status_payload(**changes: int) -> bytes:
    payload = bytearray(cobs.decode(device().send(EXAMPLE_STATUS)[:-1])[:-2])
    for name, value in changes.items():
        struct.pack_into("<B", payload, {"state": 26, "flags": 27}[name], value)
    return bytes(payload)


MALFORMED = [
    # (id, wire bytes, reason, field, offset, text in the message)
    ("bad-crc", cobs.encode(track_payload() + b"\x00\x00") + b"\x00", "crc", None, None, "CRC"),
    ("bad-cobs", b"\x09\x01\x02\x00", "framing", None, None, "COBS"),
    ("truncated-frame", b"\x02\x05\x00", "truncated", None, None, "too short"),
    ("over-long", b"\x01" * 300 + b"\x00", "too_long", None, None, "without a delimiter"),
    ("short-header", encode_frame(b"\x01\x01\x07"), "length", None, None, "8-byte header"),
    ("wrong-version", encode_frame(track_payload(version=2)), "version", "version", 0, "version 2 at byte 0"),
    ("unknown-type", encode_frame(track_payload(msg_type=9)), "unknown_type", "msg_type", 1, "type 0x09"),
    ("track-too-long", encode_frame(track_payload() + b"\x00"), "length", "length", None, "59 bytes"),
    ("track-too-short", encode_frame(track_payload()[:-1]), "length", "length", None, "57 bytes"),
    ("status-too-long", encode_frame(status_payload() + b"\x01"), "length", "length", None, "STATUS"),
    ("other-sensor", encode_frame(track_payload(sensor_id=8)), "sensor_id", "sensor_id", 2, "= 8"),
    (
        "elevation-beyond-pi/2",
        encode_frame(track_payload(elevation=(1 << 30) + 1)),
        "range",
        "elevation",
        28,
        "serial radar 7: TRACK_REPORT elevation at byte 28 = 1.57079633 rad",
    ),
    (
        "quality-over-100",
        encode_frame(track_payload(quality=101)),
        "range",
        "quality",
        56,
        "quality at byte 56",
    ),
    ("reserved-flag", encode_frame(track_payload(flags=0x05)), "range", "flags", 57, "0x05"),
    ("sigma-zero", encode_frame(track_payload(sigma_range=0)), "range", "sigma_range", 44, "raw 0"),
    (
        "negative-time",
        encode_frame(track_payload(sensor_time_ns=-1)),
        "range",
        "sensor_time_ns",
        8,
        "negative",
    ),
    (
        "rate-without-flag",
        encode_frame(track_payload(flags=0)),
        "range",
        "azimuth_rate",
        36,
        "must be 0 when rates_valid is clear",
    ),
    (
        "rate-sigma-zero",
        encode_frame(track_payload(sigma_azimuth_rate=0)),
        "range",
        "sigma_azimuth_rate",
        52,
        "sigma_azimuth_rate at byte 52",
    ),
    ("status-state", encode_frame(status_payload(state=7)), "range", "state", 26, "state at byte 26 = 7"),
    ("status-reserved-flag", encode_frame(status_payload(flags=0x80)), "range", "flags", 27, "0x80"),
]


@pytest.mark.parametrize(
    ("wire", "reason", "field", "offset", "text"), [pytest.param(*m[1:], id=m[0]) for m in MALFORMED]
)
@pytest.mark.parametrize("path", ["next_event", "drain"])
def test_malformed_input_is_rejected_and_stream_goes_on(
    wire: bytes, reason: str, field: str | None, offset: int | None, text: str, path: str
) -> None:
    dev = device(first_sequence=5)
    good = dev.send(EXAMPLE_TRACK) + dev.send(EXAMPLE_STATUS)
    gw = gateway()
    gw.receive_data(wire + good)
    out = flat(all_events(gw) if path == "next_event" else gw.drain())
    assert len(out) == 3
    rej_reason, message, _raw = out[0]
    assert rej_reason == reason
    assert text in message
    assert message.startswith("serial radar")
    track, status = out[1:]
    assert isinstance(track, TrackReport)
    assert (track.wire, track.sequence) == (EXAMPLE_TRACK.wire, 5)
    assert status == replace(EXAMPLE_STATUS, sensor_id=SID, sequence=6)
    if field is not None:
        gw = gateway()
        gw.receive_data(wire)
        (rej,) = all_events(gw)
        assert isinstance(rej, Rejected)
        assert (rej.error.field, rej.error.offset) == (field, offset)


# -- local misuse ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"range_m": math.nan}, "range_m"),
        ({"azimuth_rad": math.inf}, "azimuth_rad"),
        ({"azimuth_rad": -0.1}, "azimuth_rad"),
        ({"elevation_rad": 2.1}, "elevation_rad"),
        ({"range_m": -1.0}, "range_m"),
        ({"range_rate_mps": 3e6}, "range_rate_mps"),
        ({"sigma_range_m": 0.0}, "sigma_range_m"),
        ({"sigma_azimuth_rad": 0.07}, "sigma_azimuth_rad"),
        ({"quality": 1.2}, "quality"),
        ({"sensor_track_id": -1}, "sensor_track_id"),
        ({"sensor_time_ns": -5}, "sensor_time_ns"),
        ({"sensor_time_ns": 1.5}, "sensor_time_ns"),
        ({"rates_valid": False}, "azimuth_rate_radps"),  # rates set but flagged invalid
        ({"azimuth_rate_radps": 300.0}, "azimuth_rate_radps"),
        ({"sigma_elevation_rate_radps": 0.0}, "sigma_elevation_rate_radps"),
        ({"coasting": 1}, "coasting"),
    ],
)
def test_invalid_track_report_raises_naming_field_and_value(changes: dict[str, Any], field: str) -> None:
    kw = {n: getattr(EXAMPLE_TRACK, n) for n in EXAMPLE_TRACK.__dataclass_fields__ if n != "wire"}
    with pytest.raises(LocalProtocolError) as exc:
        TrackReport(**(kw | changes))
    assert exc.value.field == field
    assert f"TrackReport.{field} = " in str(exc.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"state": 9}, "state"), ({"track_count": 70000}, "track_count"), ({"uptime_s": -1}, "uptime_s")],
)
def test_invalid_status_raises(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(LocalProtocolError) as exc:
        replace(EXAMPLE_STATUS, **changes)
    assert exc.value.field == field


def test_tiny_positive_sigma_is_one_lsb_not_zero() -> None:
    (got,) = decode_whole(device().send(replace(EXAMPLE_TRACK, sigma_range_m=1e-300)))
    assert got.sigma_range_m == pytest.approx(0.01)


def test_roles_refuse_what_they_may_not_do() -> None:
    gw = gateway()
    with pytest.raises(LocalProtocolError, match="sends nothing"):
        gw.send(EXAMPLE_STATUS)
    dev = device()
    with pytest.raises(LocalProtocolError, match="receives nothing"):
        dev.receive_data(b"\x00")
    with pytest.raises(LocalProtocolError):
        dev.next_event()
    with pytest.raises(LocalProtocolError):
        dev.drain()
    with pytest.raises(LocalProtocolError, match="sensor_id"):
        SerialRadarCodec(Role.DEVICE)
    with pytest.raises(LocalProtocolError, match="sensor_id"):
        dev.send(replace(EXAMPLE_STATUS, sensor_id=8))
    with pytest.raises(LocalProtocolError, match="max_frame"):
        SerialRadarCodec(Role.GATEWAY, max_frame=20)


# -- fuzz ----------------------------------------------------------------------------


def check_fuzz(stream: bytes) -> None:
    gw = gateway(sensor_id=None)
    feed(gw, stream)
    gw.receive_data(b"")
    one = all_events(gw)
    for ev in one:
        assert isinstance(ev, TrackReport | Status | Rejected)
    gw = gateway(sensor_id=None)
    feed(gw, stream)
    gw.receive_data(b"")
    assert flat(gw.drain()) == flat(one)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(stream: bytes) -> None:
    check_fuzz(stream)


@settings(max_examples=300)
@given(st.lists(st.binary(min_size=50, max_size=50), max_size=6), st.sampled_from([1, 2]))
def test_fuzz_well_framed_random_bodies(bodies: list[bytes], msg_type: int) -> None:
    # Valid framing and header, random fields: exercises every range check in both decoders.
    size = 58 if msg_type == 1 else 28
    stream = b"".join(encode_frame(bytes([1, msg_type, 7, 0, 0, 0, 0, 0]) + b[: size - 8]) for b in bodies)
    check_fuzz(stream)

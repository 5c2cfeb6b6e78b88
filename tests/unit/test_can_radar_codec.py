"""CAN radar codec (docs/icd/can-radar.md): DBC layouts vs cantools, round trips,
reassembly of classic parts under loss, duplication and reordering, malformed frames."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import Rejected, Role
from drivers.can_radar import CanRadarCodec
from drivers.can_radar.icd import CLASSIC_DB, CLASSIC_PARTS, FD_DB, FD_TRACK, LAYOUTS, STATUS
from drivers.radar import TRACK_BATCH_DTYPE, SensorState, Status, TrackReportBatch
from hilgw.can import CanFrame, stack_frames
from hilgw.errors import LocalProtocolError

NOW = 1_800_000_000_000_000_000  # UTC ns, 2027
BAM24 = 2 * math.pi / 2**24


def reports(n: int, *, t_ns: int = NOW, rates: bool = True, seed: int = 0) -> npt.NDArray[np.void]:
    rng = np.random.default_rng(seed)
    a = np.zeros(n, dtype=TRACK_BATCH_DTYPE)
    a["sensor_track_id"] = np.arange(n) % 4096
    a["sensor_time_ns"] = t_ns + rng.integers(0, 10**9, n)
    a["range_m"] = rng.uniform(100, 1_000_000, n)
    a["azimuth_rad"] = rng.uniform(0, 2 * math.pi, n)
    a["elevation_rad"] = rng.uniform(-1.5, 1.5, n)
    a["range_rate_mps"] = rng.uniform(-8000, 8000, n)
    a["sigma_range_m"] = rng.uniform(1, 200, n)
    a["sigma_azimuth_rad"] = rng.uniform(1e-4, 0.02, n)
    a["sigma_elevation_rad"] = rng.uniform(1e-4, 0.02, n)
    a["sigma_range_rate_mps"] = rng.uniform(0.1, 20, n)
    a["quality"] = np.round(rng.uniform(0, 1, n), 2)
    a["rates_valid"] = rates
    a["coasting"] = rng.integers(0, 2, n).astype(bool)
    if rates:
        a["azimuth_rate_radps"] = rng.uniform(-2, 2, n)
        a["elevation_rate_radps"] = rng.uniform(-2, 2, n)
        a["sigma_azimuth_rate_radps"] = rng.uniform(1e-4, 0.02, n)
        a["sigma_elevation_rate_radps"] = rng.uniform(1e-4, 0.02, n)
    return a


def stamp(frames: list[CanFrame], t: int = NOW) -> list[CanFrame]:
    return [f._replace(timestamp_ns=t) for f in frames]


def batches(events: Sequence[object]) -> npt.NDArray[np.void]:
    rows = [e.reports for e in events if isinstance(e, TrackReportBatch)]
    return np.concatenate(rows) if rows else np.zeros(0, TRACK_BATCH_DTYPE)


def reasons(events: Sequence[object]) -> list[str]:
    return [e.reason for e in events if isinstance(e, Rejected)]


# --- the DBC layouts against cantools -------------------------------------------


@pytest.mark.parametrize("fid", sorted(LAYOUTS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_numpy_decode_matches_cantools(fid: int, data: st.DataObject) -> None:
    layout = LAYOUTS[fid]
    db = FD_DB if layout.is_fd else CLASSIC_DB
    frames = [data.draw(st.binary(min_size=layout.length, max_size=layout.length)) for _ in range(3)]
    raw = layout.decode_raw(stack_frames(frames, layout))
    for i, frame in enumerate(frames):
        want = db.decode_message(fid, frame, decode_choices=False, scaling=False)
        got = {k: int(v[i]) for k, v in raw.items()}
        assert got == want
        scaled = db.decode_message(fid, frame, decode_choices=False)
        for name, sig in layout.signals.items():
            assert sig.physical(raw[name][i : i + 1])[0] == pytest.approx(scaled[name], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("fid", sorted(LAYOUTS))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_numpy_encode_matches_cantools(fid: int, data: st.DataObject) -> None:
    layout = LAYOUTS[fid]
    db = FD_DB if layout.is_fd else CLASSIC_DB
    raw = {}
    for name, sig in layout.signals.items():
        lo, hi = (-(1 << (sig.length - 1)), (1 << (sig.length - 1)) - 1) if sig.signed else (0, sig.mask)
        raw[name] = data.draw(st.integers(lo, hi))
    cols = {k: np.array([v], dtype=np.uint64 if v > 2**63 - 1 else np.int64) for k, v in raw.items()}
    (ours,) = layout.encode_raw(cols, 1)
    theirs = db.get_message_by_frame_id(fid).encode(raw, scaling=False, padding=False, strict=False)
    assert ours == theirs


def test_dbc_parts_share_the_join_key_and_ids_are_distinct() -> None:
    assert [p.frame_id for p in CLASSIC_PARTS] == [0x300, 0x301, 0x302, 0x303, 0x304]
    assert all(not p.is_fd and p.length == 8 for p in CLASSIC_PARTS)
    assert FD_TRACK.is_fd
    assert FD_TRACK.length == 64
    assert STATUS.length == 8


# --- round trips ------------------------------------------------------------------


def test_classic_round_trip_within_one_lsb() -> None:
    src = reports(50)
    dev, gw = CanRadarCodec(Role.DEVICE), CanRadarCodec(Role.GATEWAY, sensor_id=9)
    frames = dev.encode_reports(src)
    assert len(frames) == 5 * 50
    ev = gw.receive_frames(stamp(frames))
    assert reasons(ev) == []
    got = batches(ev)
    assert got["sensor_track_id"].tolist() == src["sensor_track_id"].tolist()
    assert np.all(np.abs(got["sensor_time_ns"] - src["sensor_time_ns"]) <= 500)
    assert np.allclose(got["range_m"], src["range_m"], atol=0.05 + 1e-9)
    d_az = np.angle(np.exp(1j * (got["azimuth_rad"] - src["azimuth_rad"])))
    assert np.all(np.abs(d_az) <= BAM24 / 2 + 1e-12)
    assert np.allclose(got["elevation_rad"], src["elevation_rad"], atol=BAM24 / 2 + 1e-12)
    assert np.allclose(got["range_rate_mps"], src["range_rate_mps"], atol=0.0005 + 1e-9)
    # Sigmas are rounded up: never smaller, at most one LSB larger.
    assert np.all(got["sigma_range_m"] >= src["sigma_range_m"] - 1e-9)
    assert np.all(got["sigma_range_m"] - src["sigma_range_m"] <= 1.0 + 1e-9)
    assert np.all(got["sigma_azimuth_rad"] >= src["sigma_azimuth_rad"] - 1e-12)
    assert got["coasting"].tolist() == src["coasting"].tolist()
    assert got["quality"] == pytest.approx(src["quality"])
    assert got["sequence"].tolist() == [0] * 50  # first report of each track: counter 0


def test_fd_round_trip_matches_serial_resolution() -> None:
    src = reports(20, rates=False)
    dev, gw = CanRadarCodec(Role.DEVICE, fd=True), CanRadarCodec(Role.GATEWAY, fd=True)
    frames = dev.encode_reports(src)
    assert len(frames) == 20
    assert all(f.is_fd and len(f.data) == 64 for f in frames)
    got = batches(gw.receive_frames(stamp(frames)))
    assert got["sensor_time_ns"].tolist() == src["sensor_time_ns"].tolist()  # full ns
    assert got["sequence"].tolist() == list(range(20))
    assert np.allclose(got["range_m"], src["range_m"], atol=0.005 + 1e-9)
    assert not got["rates_valid"].any()
    assert not got["azimuth_rate_radps"].any()


@pytest.mark.parametrize("fd", [False, True])
def test_status_round_trip(fd: bool) -> None:
    dev, gw = CanRadarCodec(Role.DEVICE, fd=fd), CanRadarCodec(Role.GATEWAY, sensor_id=4, fd=fd)
    st_in = Status(
        sensor_time_ns=NOW + 123_456_789,
        state=SensorState.DEGRADED,
        time_sync_locked=False,
        radiating=True,
        track_count=17,
        uptime_s=99,
        fault_code=42,
    )
    (ev,) = gw.receive_frames(stamp([dev.send(st_in)], NOW + 10**9))
    assert isinstance(ev, Status)
    assert ev.state is SensorState.DEGRADED
    assert ev.track_count == 17
    assert ev.fault_code == 42
    assert not ev.time_sync_locked
    assert ev.radiating
    assert ev.sensor_id == 4
    if fd:
        assert ev.sensor_time_ns == st_in.sensor_time_ns
        assert ev.uptime_s == 99
    else:
        assert abs(ev.sensor_time_ns - st_in.sensor_time_ns) <= 500
        assert ev.uptime_s == 0


def test_classic_time_unwraps_across_the_modulus() -> None:
    # A time just below a multiple of 2^39 µs, received just after it wrapped.
    period_ns = (1 << 39) * 1000
    t = (NOW // period_ns + 1) * period_ns - 1_000_000
    dev, gw = CanRadarCodec(Role.DEVICE), CanRadarCodec(Role.GATEWAY)
    got = batches(gw.receive_frames(stamp(dev.encode_reports(reports(1, t_ns=t)), t + 2_000_000)))
    assert abs(int(got["sensor_time_ns"][0]) - t) < 10**9


def test_encode_rejects_what_the_icd_cannot_carry() -> None:
    dev = CanRadarCodec(Role.DEVICE)
    bad = reports(3)
    bad["sigma_range_m"][1] = 300.0  # classic SigmaRange tops at 255 m
    with pytest.raises(LocalProtocolError, match="row 1 sigma_range_m"):
        dev.encode_reports(bad)
    bad = reports(2, rates=False)
    bad["azimuth_rate_radps"][0] = 0.1
    with pytest.raises(LocalProtocolError, match="rates_valid"):
        dev.encode_reports(bad)
    bad = reports(1)
    bad["sensor_track_id"] = 5000
    with pytest.raises(LocalProtocolError, match="TrackId"):
        dev.encode_reports(bad)
    with pytest.raises(LocalProtocolError):
        CanRadarCodec(Role.GATEWAY).encode_reports(reports(1))
    with pytest.raises(LocalProtocolError):
        dev.receive_frames([])


# --- reassembly ---------------------------------------------------------------------


def classic_frames(n: int, rounds: int = 1, seed: int = 0) -> tuple[list[CanFrame], npt.NDArray[np.void]]:
    dev = CanRadarCodec(Role.DEVICE)
    src = [reports(n, seed=seed + r) for r in range(rounds)]
    frames = [f for s in src for f in dev.encode_reports(s)]
    return stamp(frames), np.concatenate(src)


def test_parts_in_any_order_complete_the_report() -> None:
    frames, _ = classic_frames(1)
    for order in ([4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        gw = CanRadarCodec(Role.GATEWAY)
        ev = gw.receive_frames([frames[i] for i in order])
        assert len(batches(ev)) == 1
        assert reasons(ev) == []
        assert gw.pending == 0


def test_byte_by_byte_equals_all_at_once() -> None:
    frames, _ = classic_frames(7, rounds=3)
    whole = batches(CanRadarCodec(Role.GATEWAY).receive_frames(frames))
    gw = CanRadarCodec(Role.GATEWAY)
    single = batches([e for f in frames for e in gw.receive_frames([f])])
    assert whole.tobytes() == single.tobytes()


def test_duplicate_part_is_counted_and_ignored() -> None:
    frames, _ = classic_frames(1)
    gw = CanRadarCodec(Role.GATEWAY)
    ev = gw.receive_frames([frames[0], frames[0], *frames[1:], frames[3]])
    assert len(batches(ev)) == 1
    assert reasons(ev) == ["duplicate", "duplicate"]  # one while pending, one after completion


def test_lost_part_drops_the_report_when_the_track_moves_on() -> None:
    frames, _ = classic_frames(1, rounds=6)  # one track, counters 0..5
    gw = CanRadarCodec(Role.GATEWAY, reorder_window=3)
    kept = [f for i, f in enumerate(frames) if i != 2]  # report 0 loses part 2
    ev = gw.receive_frames(kept)
    assert len(batches(ev)) == 5
    assert reasons(ev) == ["incomplete"]
    assert gw.pending == 0


def test_lost_part_times_out() -> None:
    frames, _ = classic_frames(1)
    gw = CanRadarCodec(Role.GATEWAY, reassembly_timeout_ns=100_000_000)
    assert gw.receive_frames(frames[:4]) == []
    assert gw.pending == 1
    assert reasons(gw.expire(NOW + 200_000_000)) == ["incomplete"]
    assert gw.pending == 0


def test_reports_overtaking_within_the_window_complete() -> None:
    frames, _src = classic_frames(1, rounds=3)
    r0, r1, r2 = frames[0:5], frames[5:10], frames[10:15]
    gw = CanRadarCodec(Role.GATEWAY, reorder_window=3)
    ev = gw.receive_frames([*r2, *r0, *r1])
    assert sorted(batches(ev)["sequence"].tolist()) == [0, 1, 2]
    assert reasons(ev) == []


def test_parts_older_than_the_window_are_late() -> None:
    frames, _ = classic_frames(1, rounds=6)
    gw = CanRadarCodec(Role.GATEWAY, reorder_window=2)
    ev = gw.receive_frames([*frames[25:30], *frames[0:5]])  # counter 5, then counter 0
    assert len(batches(ev)) == 1
    assert reasons(ev) == ["late"] * 5


def test_a_different_frame_for_a_held_part_is_a_conflict_not_a_mix() -> None:
    frames, _ = classic_frames(1)
    other = frames[1]._replace(data=frames[1].data[:2] + bytes(6))  # same key, other payload
    gw = CanRadarCodec(Role.GATEWAY)
    ev = gw.receive_frames([frames[0], frames[1], other])
    assert reasons(ev) == ["conflict"]
    assert gw.pending == 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), drop=st.floats(0, 0.3), dup=st.floats(0, 0.3))
def test_never_mixed_under_loss_duplication_and_reordering(seed: int, drop: float, dup: float) -> None:
    """Every report that comes out equals, field for field, one that went in."""
    rng = random.Random(seed)
    dev = CanRadarCodec(Role.DEVICE)
    sent: dict[tuple[int, int], list[bytes]] = {}  # a key recurs when the counter wraps
    frames: list[CanFrame] = []
    for r in range(20):  # 20 rounds over 3 tracks: counters wrap past 16
        src = reports(3, seed=seed + r)
        fr = dev.encode_reports(src)
        for k in range(3):
            part = fr[5 * k : 5 * k + 5]
            rng.shuffle(part)
            key = (int(src["sensor_track_id"][k]), r % 16)
            sent.setdefault(key, []).append(b"".join(sorted(f.data for f in fr[5 * k : 5 * k + 5])))
            for f in part:
                if rng.random() < drop:
                    continue
                frames.append(f)
                if rng.random() < dup:
                    frames.append(f)
    gw = CanRadarCodec(Role.GATEWAY)
    out = batches(gw.receive_frames(stamp(frames)))
    if drop == 0 and dup == 0:
        assert len(out) == 60
    re_dev = CanRadarCodec(Role.DEVICE)
    for row in out:
        one = np.array([row], dtype=TRACK_BATCH_DTYPE)
        re_dev._tx_counter[int(row["sensor_track_id"])] = int(row["sequence"])
        again = b"".join(sorted(f.data for f in re_dev.encode_reports(one)))
        assert again in sent[(int(row["sensor_track_id"]), int(row["sequence"]))]


# --- malformed frames ------------------------------------------------------------------


def test_unknown_id_and_wrong_length_are_rejected_by_reason() -> None:
    frames, _ = classic_frames(1)
    gw = CanRadarCodec(Role.GATEWAY)
    ev = gw.receive_frames(
        [
            CanFrame(0x123, b"\x00" * 8),
            frames[0]._replace(data=frames[0].data[:7]),
            CanFrame(0x300, bytes(8), is_extended=True),
        ]
    )
    assert reasons(ev) == ["unknown_id", "dlc", "unknown_id"]


def _with(frame: CanFrame, signal: str, raw: int) -> CanFrame:
    layout = LAYOUTS[frame.arbitration_id]
    words = stack_frames([frame.data], layout)
    cols = {k: v for k, v in layout.decode_raw(words).items()}
    cols[signal] = np.array([raw])
    (data,) = layout.encode_raw(cols, 1)
    return frame._replace(data=data)


@pytest.mark.parametrize(
    ("part", "signal", "raw", "rates"),
    [
        (1, "Elevation", (1 << 22) + 5, True),  # > π/2
        (3, "SigmaRange", 0, True),  # sigma must be > 0
        (3, "SigmaAzimuthRate", 0, True),  # rate sigma > 0 when rates valid
        (2, "AzimuthRate", 5, False),  # rate must be 0 when not valid
        (4, "Quality", 101, True),  # > 100 %
    ],
)
def test_out_of_range_rows_are_rejected_and_the_rest_kept(
    part: int, signal: str, raw: int, rates: bool
) -> None:
    dev = CanRadarCodec(Role.DEVICE)
    frames = stamp(dev.encode_reports(reports(3, rates=rates)))
    frames[5 + part] = _with(frames[5 + part], signal, raw)  # report 1 only
    ev = CanRadarCodec(Role.GATEWAY).receive_frames(frames)
    rej = [e for e in ev if isinstance(e, Rejected)]
    assert [r.reason for r in rej] == ["range"]
    assert rej[0].error.field == signal
    assert batches(ev)["sensor_track_id"].tolist() == [0, 2]


def test_id_offset_moves_every_id() -> None:
    dev, gw = CanRadarCodec(Role.DEVICE, id_offset=0x10), CanRadarCodec(Role.GATEWAY, id_offset=0x10)
    frames = stamp(dev.encode_reports(reports(2)))
    assert {f.arbitration_id for f in frames} == {0x310, 0x311, 0x312, 0x313, 0x314}
    assert len(batches(gw.receive_frames(frames))) == 2
    assert reasons(CanRadarCodec(Role.GATEWAY).receive_frames(frames[:1])) == ["unknown_id"]


@pytest.mark.parametrize("fd", [False, True])
def test_a_radar_takes_only_its_own_frame_format(fd: bool) -> None:
    """Issue 14: the other format's frames and ids are counted drops, never decoded."""
    own = stamp(CanRadarCodec(Role.DEVICE, fd=fd).encode_reports(reports(2)))
    other = stamp(CanRadarCodec(Role.DEVICE, fd=not fd).encode_reports(reports(2)))
    gw = CanRadarCodec(Role.GATEWAY, fd=fd)
    ev = gw.receive_frames(other + own)
    assert reasons(ev) == ["wrong_format"] * len(other)
    assert len(batches(ev)) == 2
    # Its own id with the FD flag the other way round: wrong_format as well.
    flipped = [f._replace(is_fd=not f.is_fd) for f in own]
    assert reasons(gw.receive_frames(flipped)) == ["wrong_format"] * len(own)
    # An id in neither DBC, or a 29-bit id: unknown_id.
    stray = [CanFrame(0x123, bytes(8), fd, False, NOW), own[0]._replace(is_extended=True)]
    assert reasons(gw.receive_frames(stray)) == ["unknown_id", "unknown_id"]


def test_fd_status_with_garbage_state_or_time_is_a_counted_drop() -> None:
    """A wire State of 53 or a negative time is the peer's error: ``range``, not ValueError."""
    frame = CanRadarCodec(Role.DEVICE, fd=True).send(
        Status(
            sensor_time_ns=NOW, state=SensorState.OK, time_sync_locked=True, radiating=True,
            track_count=1, uptime_s=1,
        )
    )  # fmt: skip
    gw = CanRadarCodec(Role.GATEWAY, fd=True)
    bad = bytearray(frame.data)
    bad[18] = 53  # State: bits 144..151 (can_radar_fd.dbc)
    (ev,) = gw.receive_frames([CanFrame(frame.arbitration_id, bytes(bad), True, False, NOW)])
    assert isinstance(ev, Rejected)
    assert ev.reason == "range"
    assert "State 53" in str(ev.error)
    huge = bytearray(frame.data)
    huge[0:8] = (1 << 63).to_bytes(8, "little")  # SensorTime is signed: negative
    (ev,) = gw.receive_frames([CanFrame(frame.arbitration_id, bytes(huge), True, False, NOW)])
    assert isinstance(ev, Rejected)
    assert ev.reason == "range"


def test_a_receive_time_near_the_end_of_int64_drops_not_raises() -> None:
    """Classic times unwrap against the receive time (ICD §4.3); a replayed recording's
    garbage receive time must give a counted ``range`` drop, never LocalProtocolError."""
    from drivers.can_radar.icd import MEAS_TIME_MODULUS_US, STATUS_TIME_MODULUS_US

    t_rx = 2**63 - 1
    ref_us = t_rx // 1000

    def ahead(modulus: int) -> int:  # a stamp that unwraps to 0.4 modulus after t_rx: past int64 ns
        return (ref_us + (4 * modulus) // 10) % modulus * 1000

    dev = CanRadarCodec(Role.DEVICE)
    st_frame = dev.send(
        Status(
            sensor_time_ns=ahead(STATUS_TIME_MODULUS_US), state=SensorState.OK, time_sync_locked=True,
            radiating=True, track_count=1, uptime_s=0,
        )
    )  # fmt: skip
    src = reports(2)
    src["sensor_time_ns"] = ahead(MEAS_TIME_MODULUS_US)
    frames = [*dev.encode_reports(src), st_frame]
    ev = CanRadarCodec(Role.GATEWAY).receive_frames(stamp(frames, t_rx))
    assert reasons(ev) == ["range", "range", "range"]

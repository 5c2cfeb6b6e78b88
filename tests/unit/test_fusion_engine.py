"""The fusion engine end to end on crafted scenes (no I/O, in-memory arrays)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.bench_fusion import run_bench
from gateway.fusion.api import (
    KIND_PLOT,
    KIND_SENSOR_TRACK,
    STATUS_COASTING,
    STATUS_CONFIRMED,
    STATUS_DROPPED,
    STATUS_TENTATIVE,
    ReportArrays,
    TrackArrays,
)
from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.motion import flat_gravity
from hilgw.geo import ecef_to_polar, local_geometry

SITES = np.array([[0.0, 0.0, 0.0], [60e3, -40e3, 100.0], [20e3, 70e3, 500.0]])
SIG = np.array([30.0, 1e-3, 1e-3, np.nan])  # range, az, el, range rate
NCV = FusionConfig(models=("ncv",), imm_initial=(1.0,), q_ncv=1.0)
S = 1_000_000_000
NOISE = np.array([50.0, 50.0, 50.0, 0.0, 0.0, 0.0])


def engine(cfg: FusionConfig = NCV, sites: np.ndarray = SITES) -> Engine:
    e = Engine(cfg, accel=flat_gravity())
    for i, p in enumerate(sites):
        e.add_sensor(local_geometry(f"r{i}", p))
    return e


def plots(sensor: int, xs: np.ndarray, t_ns: int, rng: np.random.Generator | None) -> ReportArrays:
    """Plots of sensor ``sensor`` of states xs (N, 6) at time t (noise if rng)."""
    n = xs.shape[0]
    z = ecef_to_polar(SITES[sensor], np.eye(3), xs)
    if rng is not None:
        z[:, :3] += rng.standard_normal((n, 3)) * SIG[:3]
    z[:, 3] = np.nan
    return ReportArrays(
        sensor=np.full(n, sensor, np.int32),
        sensor_track_id=np.zeros(n, np.uint32),
        kind=np.full(n, KIND_PLOT, np.int8),
        t_ns=np.full(n, t_ns, np.int64),
        x=np.full((n, 6), np.nan),
        P=np.full((n, 6, 6), np.nan),
        quality=np.ones(n),
        polar=z,
        polar_sigma=np.tile(SIG, (n, 1)),
    )


def sensor_tracks(sensor: int, stid: list[int], xs: np.ndarray, t_ns: int, sigma: float) -> ReportArrays:
    n = xs.shape[0]
    return ReportArrays(
        sensor=np.full(n, sensor, np.int32),
        sensor_track_id=np.asarray(stid, np.uint32),
        kind=np.full(n, KIND_SENSOR_TRACK, np.int8),
        t_ns=np.full(n, t_ns, np.int64),
        x=xs.copy(),
        P=np.tile(np.diag([sigma**2] * 3 + [(sigma / 5) ** 2] * 3), (n, 1, 1)),
        quality=np.ones(n),
        polar=np.full((n, 4), np.nan),
        polar_sigma=np.full((n, 4), np.nan),
    )


def at(x0: np.ndarray, t: float) -> np.ndarray:
    x = x0.copy()
    x[:, :3] += t * x[:, 3:]
    return x


def write_bench_scenario(
    path: Path,
    x0: np.ndarray,
    k_scans: int,
    seed: int,
    labels: Callable[[int], list[int]] | None = None,
) -> np.ndarray:
    """A bench-format ``.npz`` of the objects ``x0`` (straight flight) seen by the three
    ``SITES`` radars in turn at 3 Hz, Pd 1, no clutter, σ = 1 mrad, 1 mrad, 30 m.

    ``labels(k)`` gives scan k's ``meas_truth`` (one object index a plot); without
    it the file has no labels. Returns the scan times.
    """
    rng = np.random.default_rng(seed)
    scan_time = np.arange(k_scans) / 3.0
    scan_sensor = (np.arange(k_scans) % 3).astype(np.int32)
    n = len(x0)
    mz, ms, msc, mt = [], [], [], []
    for k in range(k_scans):
        p = at(x0, scan_time[k])[:, :3] - SITES[scan_sensor[k]]
        r = np.linalg.norm(p, axis=1)
        z = np.column_stack([np.arcsin(p[:, 2] / r), np.arctan2(p[:, 1], p[:, 0]), r])
        mz.append(z + rng.standard_normal(z.shape) * [1e-3, 1e-3, 30.0])
        ms += [scan_sensor[k]] * n
        msc += [k] * n
        if labels is not None:
            mt += labels(k)
    arrays = {
        "sensor_pos": SITES,
        "sensor_sigma": np.tile([1e-3, 1e-3, 30.0], (3, 1)),
        "scan_time": scan_time,
        "scan_sensor": scan_sensor,
        "meas_scan": np.array(msc, np.int32),
        "meas_time": scan_time[msc],
        "meas_sensor": np.array(ms, np.int32),
        "meas_z": np.vstack(mz),
    }
    if labels is not None:
        arrays["meas_truth"] = np.array(mt, np.int64)
    np.savez_compressed(path, **arrays)
    return scan_time


def row(pic: TrackArrays, tid: int) -> int:
    return int(np.flatnonzero(pic.track_id == tid)[0])


def test_crossing_targets_keep_their_tracks() -> None:
    # Two targets on an X: they pass 150 m apart (well inside one cross-range
    # sigma of a single plot at 100 km) at t = 20 s, headings 60° apart.
    rng = np.random.default_rng(7)
    c = np.array([100e3, 10e3, 20e3])
    v1 = np.array([-1500.0, 800.0, 0.0])
    v2 = np.array([-1500.0, -800.0, 0.0])
    x0 = np.array([[*(c - 20 * v1), *v1], [*(c - 20 * v2 + [0, 0, 150.0]), *v2]])
    e = engine()
    ids_at: dict[str, np.ndarray] = {}
    for k in range(120):
        t = k / 3.0
        pic = e.step(plots(k % 3, at(x0, t), round(t * S), rng), round(t * S))
        conf = pic.status == STATUS_CONFIRMED
        if k in (45, 119):
            truth = at(x0, t)[:, :3]
            d = np.linalg.norm(pic.x[conf][None, :, :3] - truth[:, None, :], axis=2)
            assert d.shape[1] == 2, pic.track_id
            ids_at[str(k)] = pic.track_id[conf][d.argmin(axis=1)]
            assert d.min(axis=1).max() < 300.0
    assert ids_at["45"].tolist() == ids_at["119"].tolist()
    assert len(set(ids_at["45"].tolist())) == 2


def test_track_life_cycle_tentative_confirmed_coasting_dropped() -> None:
    x0 = np.array([[150e3, 0.0, 30e3, -2000.0, 0.0, 0.0]])
    # Reports stop at t = 4 s: no batch means no miss, so time decides.
    e = engine(dataclasses.replace(NCV, confirm_m=3, confirm_n=5, coast_after_s=1.0, drop_after_s=3.0))
    seen: list[int] = []
    tid = None
    for k in range(30):
        t = k / 3.0
        rep = plots(k % 3, at(x0, t), round(t * S), None) if k < 12 else ReportArrays.empty()
        pic = e.step(rep, round(t * S))
        if len(pic):
            tid = int(pic.track_id[0]) if tid is None else tid
            assert pic.track_id.tolist() == [tid]
            seen.append(int(pic.status[0]))
    assert seen[:2] == [STATUS_TENTATIVE, STATUS_TENTATIVE]
    assert seen[2] == STATUS_CONFIRMED
    assert STATUS_COASTING in seen
    assert seen[-1] == STATUS_DROPPED
    assert seen.count(STATUS_DROPPED) == 1
    assert len(e.store.x[: e.store.n]) == 0


def test_single_clutter_plot_never_confirms() -> None:
    e = engine()
    rng = np.random.default_rng(1)
    lone = np.array([[200e3, 50e3, 30e3, 0.0, 0.0, 0.0]])
    statuses = []
    for k in range(12):
        t = k / 3.0
        rep = plots(0, lone, round(t * S), rng) if k == 0 else ReportArrays.empty()
        pic = e.step(rep, round(t * S))
        statuses += pic.status.tolist()
    assert STATUS_CONFIRMED not in statuses
    assert statuses[-1] == STATUS_DROPPED


def _run_order(order: list[int], lag_s: float = 2.0) -> tuple[Engine, TrackArrays]:
    rng = np.random.default_rng(11)
    x0 = np.array([[120e3, 20e3, 25e3, -1800.0, 300.0, 0.0]])
    e = engine(dataclasses.replace(NCV, oos_lag_s=lag_s))
    scans = [plots(k % 3, at(x0, k / 3.0), round(k / 3.0 * S), rng) for k in range(30)]
    for k in range(24):
        e.step(scans[k], round(k / 3.0 * S))
    # Scans 24..29 arrive in ``order``; the picture time follows arrival.
    pic = e.step(ReportArrays.empty(), round(23 / 3.0 * S))
    t_now = round(23 / 3.0 * S)
    for k in order:
        t_now = max(t_now, round(k / 3.0 * S))
        pic = e.step(scans[k], t_now)
    return e, pic


def test_out_of_sequence_reports_match_in_order_result() -> None:
    _, ref = _run_order([24, 25, 26, 27, 28, 29])
    e, oos = _run_order([24, 26, 27, 25, 29, 28])
    assert e.counters["oos_used"] == 2 * len(_plots_len())
    assert e.counters["late_dropped"] == 0
    assert oos.track_id.tolist() == ref.track_id.tolist()
    np.testing.assert_allclose(oos.x[0, :3], ref.x[0, :3], atol=20.0)
    # Algorithm B1 is near-optimal: the covariance stays within a few percent.
    np.testing.assert_allclose(np.diag(oos.P[0]), np.diag(ref.P[0]), rtol=0.15)


def _plots_len() -> list[int]:
    return [0]  # one plot per scan in _run_order


def test_reports_older_than_lag_are_counted_and_dropped() -> None:
    e, _ = _run_order([24, 26, 27, 28, 29, 25], lag_s=0.5)
    assert e.counters["late_dropped"] == 1


def test_future_reports_wait_for_their_picture() -> None:
    e = engine()
    x0 = np.array([[120e3, 0.0, 25e3, -1000.0, 0.0, 0.0]])
    pic = e.step(plots(0, at(x0, 5.0), 5 * S, None), 1 * S)
    assert len(pic) == 0
    assert e.counters["held_for_later"] == 1
    pic = e.step(ReportArrays.empty(), 5 * S)
    assert len(pic) == 1
    assert e.counters["held_for_later"] == 0


def test_sensor_track_handover_keeps_system_track_id() -> None:
    # Sensor 0 holds the target as its track 7 until t = 20 s, sensor 1 as its
    # track 3 from t = 12 s on: one system track throughout, both contributors
    # while they overlap, and the pairing persists by (sensor, track id).
    x0 = np.array([[150e3, 10e3, 30e3, -1500.0, 200.0, 0.0]])
    e = engine(dataclasses.replace(NCV, drop_misses=3))
    rng = np.random.default_rng(3)
    ids = set()
    contrib_overlap: set[tuple[int, int]] = set()
    for k in range(90):
        t = k / 3.0
        reps = []
        xt = at(x0, t)
        if t < 20.0 and k % 3 == 0:
            reps.append(sensor_tracks(0, [7], xt + rng.standard_normal(6) * NOISE, round(t * S), 60.0))
        if t >= 12.0 and k % 3 == 1:
            reps.append(sensor_tracks(1, [3], xt + rng.standard_normal(6) * NOISE, round(t * S), 60.0))
        pic = e.step(ReportArrays.concat(reps), round(t * S))
        live = pic.status != STATUS_DROPPED
        ids.update(pic.track_id[live].tolist())
        if 14.0 < t < 19.0:
            contrib_overlap |= set(
                zip(pic.contrib_sensor.tolist(), pic.contrib_sensor_track_id.tolist(), strict=True)
            )
        if len(pic):
            assert np.linalg.norm(pic.x[0, :3] - xt[0, :3]) < 400.0
    assert len(ids) == 1, ids
    assert contrib_overlap == {(0, 7), (1, 3)}
    assert pic.contrib_sensor.tolist() == [1]  # sensor 0's pairing expired


def test_sensor_track_pairing_persists_over_a_closer_rival() -> None:
    # Sensor 1's track 5 is paired with system track A; later a second system
    # track B (from sensor 0's track 9) sits nearer to track 5's report than
    # A does. Persistence keeps 5 on A.
    e = engine(dataclasses.replace(NCV, drop_misses=50))
    xa = np.array([[100e3, 0.0, 20e3, -1000.0, 0.0, 0.0]])
    pic = e.step(sensor_tracks(1, [5], xa, 0, 100.0), 0)
    a_id = int(pic.track_id[0])
    xb = at(xa, 1.0) + np.array([[600.0, 0, 0, 0, 0, 0]])
    e.step(sensor_tracks(0, [9], xb, S, 30.0), S)
    report = at(xa, 1.0) + np.array([[450.0, 0, 0, 0, 0, 0]])
    pic = e.step(sensor_tracks(1, [5], report, S + S // 10, 100.0), S + S // 10)
    r = row(pic, a_id)
    pairs = set(
        zip(
            pic.contrib_row.tolist(),
            pic.contrib_sensor.tolist(),
            pic.contrib_sensor_track_id.tolist(),
            strict=True,
        )
    )
    assert (r, 1, 5) in pairs
    assert len(pic) == 2


def test_bench_roundtrip_on_tiny_scenario(tmp_path: Path) -> None:
    # A 2-target, 3-radar scenario in the bench's documented file format.
    k_scans = 45
    x0 = np.array([[250e3, -50e3, 60e3, -2000.0, 300.0, 0.0], [300e3, 40e3, 90e3, -1500.0, -500.0, 50.0]])
    path = tmp_path / "scen.npz"
    scan_time = write_bench_scenario(path, x0, k_scans, seed=5)
    res = run_bench(path, tmp_path / "tracks.npz")
    assert res["scans"] == k_scans
    assert res["measurements"] == 2 * k_scans
    with np.load(tmp_path / "tracks.npz") as tr:
        assert set(np.unique(tr["track_id"]).tolist()).__len__() == 2
        last = np.isclose(tr["track_time"], scan_time[-1])
        est = tr["track_state"][last]
        truth = at(x0, scan_time[-1])[:, [0, 3, 1, 4, 2, 5]]
        d = np.linalg.norm(est[:, None, [0, 2, 4]] - truth[None, :, [0, 2, 4]], axis=2)
        assert d.min(axis=0).max() < 500.0


def test_two_reports_of_one_sensor_track_in_one_step_stay_one_track() -> None:
    # A 10 Hz sensor read by a 5 Hz picture: each step carries two reports of
    # the same sensor track, 60 ms apart. They are one target, used in order.
    x0 = np.array([[150e3, 10e3, 30e3, -1500.0, 200.0, 0.0]])
    e = engine()
    for k in range(6):
        t1, t2 = 0.2 * k, 0.2 * k + 0.06
        reps = ReportArrays.concat(
            [
                sensor_tracks(0, [7], at(x0, t1), round(t1 * S), 60.0),
                sensor_tracks(0, [7], at(x0, t2), round(t2 * S), 60.0),
            ]
        )
        pic = e.step(reps, round((t2 + 0.01) * S))
    assert pic.track_id.tolist() == [1]
    assert int(pic.update_count[0]) == 12
    assert np.linalg.norm(pic.x[0, :3] - at(x0, 1.07)[0, :3]) < 100.0


def test_a_short_lived_sensor_track_never_confirms_a_lasting_one_does_by_m_of_n() -> None:
    # A land radar's clutter track: reported on 2 scans, then dropped by the
    # radar. It must not enter the picture as a confirmed (then coasting)
    # system track; the target's sensor track, reported every scan, is
    # confirmed by M of N (3 of 5 with the default) like a plot track.
    e = engine(dataclasses.replace(NCV, confirm_m=3, confirm_n=5))
    clutter = np.array([[120e3, 40e3, 5e3, 0.0, 0.0, 0.0]])
    target = np.array([[100e3, -30e3, 10e3, -250.0, 0.0, 0.0]])
    status: dict[int, list[int]] = {}
    for k in range(8):
        t = k * 0.5
        xs, ids = (np.vstack([at(target, t), clutter]), [1, 2]) if k < 2 else (at(target, t), [1])
        pic = e.step(sensor_tracks(0, ids, xs, round(t * S), 50.0), round(t * S))
        for tid, s in zip(pic.track_id.tolist(), pic.status.tolist(), strict=True):
            status.setdefault(tid, []).append(s)
    assert len(status) == 2
    tgt, clu = sorted(status, key=lambda tid: len(status[tid]), reverse=True)
    assert STATUS_CONFIRMED not in status[clu]
    assert STATUS_COASTING not in status[clu]
    assert status[tgt][:2] == [STATUS_TENTATIVE, STATUS_TENTATIVE]
    assert status[tgt][2:] == [STATUS_CONFIRMED] * 6

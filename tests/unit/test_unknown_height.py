"""ASTERIX reports of unknown height (issue 13): a ballistic target above what
I048/110, I062/130 or I062/340 can carry is normalised to a report consistent
with where it is (no tight wrong height), and the driver counts such reports.

Before the fix a CAT048 plot without I048/110 sat at elevation 0 with a 5°
sigma (hundreds of sigmas off a target 100+ km up) and every high report had
the level-flight vertical speed sigma of 50 m/s: each made a new system track."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pymap3d
import pytest

from drivers.asterix import (
    SYSTEM_TRACK_DTYPE,
    TARGET_REPORT_DTYPE,
    AsterixCodec,
    SystemTrack062,
    TargetReport048,
)
from drivers.asterix.items import I048_110_MAX_M, I062_340_MAX_M
from drivers.base import Role
from gateway.config import OwnShipConfig, parse_config
from gateway.devices.ownship import OwnShipStore
from gateway.health import DeviceStats
from gateway.normalise_ship import (
    PlotSigmas,
    TrackDefaults,
    plots_to_ecef,
    system_tracks_to_ecef,
)
from gateway.supervisor import Gateway
from hilgw.geo import ecef_to_polar
from hilgw.ship import radar_frames
from sim_devices.frigate_emulator import Counters, FrigateModel, encode_scan
from sim_devices.scenario import resolve_scenario
from sim_devices.truth import truth_at

DEG = math.pi / 180
#: sqrt of the chi-square 6-dof 99.9 % quantile (22.46): a report outside is a new track.
GATE6 = math.sqrt(22.46)


def _ship(heading: float = 20.0, roll: float = 3.0) -> Any:
    s = OwnShipStore(
        OwnShipConfig(lat_deg=46.4, lon_deg=-31.0, alt_m=30.0, heading_deg=heading, roll_deg=roll)
    )
    return s.states_at(np.zeros(1, np.int64))


def _ballistic() -> np.ndarray:
    """A target 150 km up, about 250 km north-east of the ship, falling at 1.2 km/s."""
    lat, lon, h = 48.0, -29.0, 150_000.0
    p = np.array(pymap3d.geodetic2ecef(lat, lon, h))
    v = np.array(pymap3d.enu2uvw(800.0, -1500.0, -1200.0, lat, lon))
    return np.r_[p, v]


def _mahalanobis(x: np.ndarray, P: np.ndarray, truth: np.ndarray) -> float:
    e = x - truth
    return float(np.sqrt(e @ np.linalg.solve(P, e)))


@pytest.mark.parametrize("ref", ["north", "deck"])
@pytest.mark.parametrize("height", [np.nan, I048_110_MAX_M, -I048_110_MAX_M])
def test_cat048_plot_of_a_high_target_without_usable_height_is_consistent(ref: str, height: float) -> None:
    s = _ship()
    tgt = _ballistic()
    pol = ecef_to_polar(s.pos, radar_frames(s, ref), tgt[None, :])
    lat, lon, _ = pymap3d.ecef2geodetic(*tgt[:3])
    e, n, _ = pymap3d.uvw2enu(*tgt[3:], lat, lon)
    rows = np.zeros(1, TARGET_REPORT_DTYPE)
    rows["range_m"], rows["azimuth_rad"], rows["height_m"] = pol[0, 0], pol[0, 1], height
    rows["ground_speed_mps"], rows["heading_rad"] = math.hypot(e, n), math.atan2(e, n) % (2 * math.pi)
    rows["track_number"] = 7
    x, P, *_ = plots_to_ecef(rows, s, ref, PlotSigmas())
    assert _mahalanobis(x[0], P[0], tgt) < 3.0
    # Still a measurement: the azimuth plane stays tight (cross-range sigma ~ rho * sigma_az).
    los = tgt[:3] - s.pos[0]
    cross = np.cross(los, x[0, :3] - s.pos[0])
    cross /= np.linalg.norm(cross)
    assert math.sqrt(cross @ P[0, :3, :3] @ cross) < 3 * pol[0, 0] * PlotSigmas().azimuth_rad + 100.0


def test_cat048_plot_of_an_air_target_keeps_its_height_and_level_flight() -> None:
    s = _ship()
    tgt = np.array(pymap3d.geodetic2ecef(46.9, -30.5, 9000.0))
    pol = ecef_to_polar(s.pos, radar_frames(s, "north"), np.r_[tgt, 0, 0, 0][None, :])
    rows = np.zeros(1, TARGET_REPORT_DTYPE)
    rows["range_m"], rows["azimuth_rad"], rows["height_m"] = pol[0, 0], pol[0, 1], 9000.0
    rows["ground_speed_mps"], rows["heading_rad"] = 250.0, 1.0
    x, P, *_ = plots_to_ecef(rows, s, "north", PlotSigmas())
    assert np.linalg.norm(x[0, :3] - tgt) < 5.0
    up = np.array(pymap3d.enu2uvw(0.0, 0.0, 1.0, 46.9, -30.5))
    assert math.sqrt(up @ P[0, 3:, 3:] @ up) == pytest.approx(PlotSigmas().vertical_speed_mps, rel=0.02)


def _cat062_rows(n: int) -> np.ndarray:
    rows = np.zeros(n, SYSTEM_TRACK_DTYPE)
    for f in SYSTEM_TRACK_DTYPE.names:
        if SYSTEM_TRACK_DTYPE[f].kind == "f":
            rows[f] = np.nan
    return rows


def test_cat062_heights_out_of_range_or_saturated_are_unknown_and_consistent() -> None:
    tgt = _ballistic()
    tgt[:3] = pymap3d.geodetic2ecef(48.0, -29.0, 300_000.0)
    lat, lon, _ = pymap3d.ecef2geodetic(*tgt[:3], deg=False)
    e, n, _ = pymap3d.uvw2enu(*tgt[3:], lat, lon, deg=False)
    rows = _cat062_rows(4)
    rows["lat_rad"], rows["lon_rad"], rows["vx_mps"], rows["vy_mps"] = lat, lon, e, n
    rows["geo_alt_m"][0] = 60_000.0  # above I062/130's 150,000 ft: not a valid value
    rows["measured_height_m"][1] = I062_340_MAX_M  # HEIGHT saturated: "this high or higher"
    rows["flight_level_m"][2] = 1600 * 30.48  # above I062/136's FL 1,500
    # rows[3]: no height item at all
    x, P, ok, unknown = system_tracks_to_ecef(rows, TrackDefaults())
    assert ok.all()
    assert unknown.all()
    for i in range(4):
        assert _mahalanobis(x[i], P[i], tgt) < GATE6, i
    h = pymap3d.ecef2geodetic(*x[1, :3])[2]
    assert h > I062_340_MAX_M  # the saturated item bounds the height from below


def test_demo_frigate_reports_of_ballistic_targets_gate_with_the_truth() -> None:
    """The bundled demo's frigates over ASTERIX (emulator -> bytes -> gateway
    normalisation): every report of a ballistic target lies inside the 6-D
    gate around its truth (fusion keeps one track), and air targets keep a
    tight height."""
    scn = resolve_scenario("builtin:demo")
    ids = [t.id for t in scn.targets]
    m = FrigateModel(scn, "ew-ship-b", 0)  # "deck" azimuth reference, rolling ship
    dev, gw = AsterixCodec(Role.DEVICE), AsterixCodec(Role.GATEWAY)
    worst = {48: 0.0, 62: 0.0}
    n_bm = 0
    for t in np.arange(45.0, 330.0, 15.0):
        events, truth_rows = m.scan(float(t))
        plots = [e for e in events if isinstance(e, TargetReport048)]
        tn_row = {e.track_number: r for e, r in zip(plots, truth_rows, strict=True) if r >= 0}
        _, X, _ = truth_at(scn, float(t))
        s = m.ship.at(float(t))
        for dg in encode_scan(dev, events, Counters()):
            for ev in gw.receive_datagram_batch(dg, 0):
                rows = getattr(ev, "rows", None)
                if rows is None:
                    continue
                cat = 48 if "range_m" in rows.dtype.names else 62
                if cat == 48:
                    k = rows.shape[0]
                    ship = type(s)(*(np.repeat(getattr(s, f), k, axis=0) for f in type(s).__slots__))
                    x, P, *_ = plots_to_ecef(rows, ship, m.sensor.azimuth_reference, PlotSigmas())
                else:
                    x, P, _, _ = system_tracks_to_ecef(rows, TrackDefaults())
                for i, tn in enumerate(rows["track_number"]):
                    r = tn_row.get(int(tn))
                    if r is None or not ids[r].startswith("tgt-bm"):
                        continue
                    n_bm += 1
                    worst[cat] = max(worst[cat], _mahalanobis(x[i], P[i], X[r]))
    assert n_bm > 40
    assert worst[48] < GATE6, worst
    assert worst[62] < GATE6, worst


def test_driver_counts_reports_of_unknown_height() -> None:
    site = {"lat_deg": 46.4, "lon_deg": -31.0, "alt_m": 30.0}
    dev = {
        "id": "net",
        "protocol": "asterix",
        "transport": {"kind": "udp", "bind_port": 47011},
        "sources": [{"sac": 9, "sic": 1, "site": site}, {"sac": 9, "sic": 2}],
    }
    gwc = Gateway(parse_config({"gateway_id": "t", "mqtt": {"enabled": False}, "devices": [dev]}))
    stats = gwc.stats["net"] = DeviceStats("net", "asterix", "udp")
    drv: Any = gwc._make_driver(gwc.config.devices[0], stats)
    t = 1_800_000_000_000_000_000
    events = [
        TargetReport048(9, 1, t, 200_000.0, 0.5, None, 1, 1500.0, 0.3),  # no I048/110
        TargetReport048(9, 1, t, 150_000.0, 0.7, 9000.0, 2, 250.0, 0.3),  # an air target
        SystemTrack062(sac=9, sic=2, track_number=1, t_ns=t, lat_rad=0.84, lon_rad=-0.54),  # no height
        SystemTrack062(sac=9, sic=2, track_number=2, t_ns=t, lat_rad=0.82, lon_rad=-0.54, geo_alt_m=9000.0),
    ]
    out = []
    for dg in encode_scan(AsterixCodec(Role.DEVICE), events, Counters()):
        out += drv.handle_datagram(dg, t)
    assert sum(len(r.reports) for r in out) == 4  # published, not dropped
    assert stats.degraded["height_unknown"] == 2
    assert sum(src.degraded["height_unknown"] for src in stats.sources.values()) == 2


def test_a_config_with_the_retired_elevation_sigma_still_loads_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gateway.sections.feeds import AsterixConfig

    with caplog.at_level("WARNING"):
        cfg = AsterixConfig.model_validate({"sigma_elevation_no_height_deg": 5.0, "sigma_range_m": 40.0})
    assert cfg.sigma_range_m == 40.0
    assert "sigma_elevation_no_height_deg is no longer used" in caplog.text
    with pytest.raises(ValueError, match="sigma_elevation_no_height_degx"):
        AsterixConfig.model_validate({"sigma_elevation_no_height_degx": 5.0})

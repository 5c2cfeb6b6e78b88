"""Exo-atmospheric tracks bid for plots without their manoeuvre model
(``assoc_quiet_above_m``, gateway/fusion/twoscan.py ``quiet_logsumexp``).

Hand-built dense case, one radar, two tracks on one line of sight: track B is
settled on its object (ballistic, μ_manoeuvre 0.02) and the plot is its
object's, 2.7 σ long in range; track A, 300 m short, has been dragged about by
plots of its neighbours so its manoeuvre model holds μ = 0.7. With the full
IMM mixture as the GNN cost (the engine before), A's wide manoeuvre share
outbids B and A takes B's plot; at 200 km up no object manoeuvres, and
without that share A (4.5 σ off) loses it to B. At 5 km (an aircraft, which
can turn) the full mixture still decides.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from gateway.bench_fusion import scenario_gravity
from gateway.fusion.api import ReportArrays
from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.motion import A_WGS84, altitude_from_gravity, imm_combine
from hilgw.geo import local_geometry
from tests.unit.test_fusion_engine import plots

S = 1_000_000_000
# A local frame, z up, the Earth's centre below the radar (as the bench's ballistic families).
ACCEL = scenario_gravity(json.dumps({"gravity": {"model": "central", "centre": [0, 0, -A_WGS84]}}))


def _plots(pos: np.ndarray, t_ns: int) -> ReportArrays:
    """Noise-free plots of points ``pos`` by the radar at the origin (SITES[0])."""
    x = np.zeros((len(pos), 6))
    x[:, :3] = pos
    return plots(0, x, t_ns, None)


def _taker(height_m: float, quiet_above_m: float, cfg: FusionConfig | None = None) -> str:
    """Which track ("A" or "B") takes the plot of B's object."""
    base = cfg or FusionConfig(confirm_m=1, merge_radius_m=0.0)
    # The cost rule alone: with the exo exit rate (gateway/fusion/exo.py) the
    # IMM interaction of the 1 s step would also mix A's wide manoeuvre state
    # into its other models (measured on the complexes together:
    # benchmarks/fusion/RESULTS.md).
    cfg = dataclasses.replace(base, assoc_quiet_above_m=quiet_above_m, exo_exit_rate_hz=0.0)
    e = Engine(cfg, accel=ACCEL)
    e.add_sensor(local_geometry("r0", np.zeros(3)))
    plot = np.array([300e3, 0.0, height_m])
    los = plot / np.linalg.norm(plot)
    a, b = plot - 300.0 * los, plot + 180.0 * los
    e.step(_plots(np.array([a, b + np.array([0.0, 0.0, 5e3])]), 0), 0)  # two tracks to overwrite
    st = e.store
    assert st.n == 2
    ids = st.track_id[:2].copy()
    for i, (p, mu) in enumerate(((a, [0.05, 0.25, 0.7]), (b, [0.1, 0.88, 0.02]))):
        st.xm[i] = np.r_[p, 0.0, 0.0, 0.0]
        st.Pm[i] = np.diag([60.0**2] * 3 + [1.0] * 3)
        st.Pm[i, 2] = np.diag([300.0**2] * 3 + [100.0**2] * 3)  # the manoeuvre model
        st.mu[i] = mu
    st.x[:2], st.P[:2] = imm_combine(st.xm[:2], st.Pm[:2], st.mu[:2])
    pic = e.step(_plots(plot[None], S), S)
    updated = {int(t) for t, u in zip(pic.track_id, pic.update_count, strict=True) if u == 2}
    assert len(updated) == 1
    return "A" if int(ids[0]) in updated else "B"


def test_full_mixture_lets_the_roaming_track_take_its_neighbours_plot() -> None:
    assert _taker(200e3, quiet_above_m=1e9) == "A"


def test_exo_atmospheric_track_bids_without_its_manoeuvre_model() -> None:
    assert _taker(200e3, quiet_above_m=60e3) == "B"


def test_an_aircraft_keeps_its_manoeuvre_model_in_the_cost() -> None:
    assert _taker(5e3, quiet_above_m=60e3) == "A"


@pytest.mark.parametrize("height", [0.0, 5e3, 200e3, 900e3])
def test_height_is_read_from_the_gravity_field(height: float) -> None:
    x = np.array([[10e3, -20e3, height, 0.0, 0.0, 0.0]])  # the engine's (x, y, z, vx, vy, vz)
    got = float(altitude_from_gravity(ACCEL, x)[0])
    want = float(np.linalg.norm(x[0, :3] - [0.0, 0.0, -A_WGS84]) - A_WGS84)
    assert got == pytest.approx(want, abs=1.0)


def test_height_in_the_rotating_earth_frame_ignores_speed() -> None:
    """ECEF with J2 and the rotating-frame terms (the live gateway's field): a
    3 km/s object 150 km up reads within 15 km of it (Coriolis left out),
    an aircraft at 10 km and 300 m/s well below the 60 km of the rule."""
    from gateway.fusion.motion import ecef_gravity

    field = ecef_gravity()
    for lat_deg, h, v in ((0.0, 150e3, 3000.0), (45.0, 150e3, 3000.0), (0.0, 10e3, 300.0)):
        lat = np.radians(lat_deg)
        r = A_WGS84 + h
        x = np.array([[r * np.cos(lat), 0.0, r * np.sin(lat), 0.0, v, 0.0]])
        assert float(altitude_from_gravity(field, x)[0]) == pytest.approx(h, abs=15e3)


def test_per_model_switch_rates_pass_the_config_check() -> None:
    """``imm_switch_rate_hz`` is documented as one rate or one per model; the
    type check used to refuse the tuple (found while measuring this)."""
    from hilgw.errors import ConfigError

    FusionConfig(imm_switch_rate_hz=(0.005, 0.0005, 0.005)).check()
    with pytest.raises(ConfigError, match="imm_switch_rate_hz"):
        FusionConfig(imm_switch_rate_hz=(0.005, "fast", 0.005)).check()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="imm_switch_rate_hz"):
        FusionConfig(imm_switch_rate_hz=(0.005, 0.005)).check()


def test_quiet_models_are_configurable_and_checked() -> None:
    """``assoc_quiet_models`` names the models left out of the exo cost; with
    NCV left out too (the ballistic model alone bids) the settled track B
    still keeps its plot, and an unknown model name is refused."""
    from hilgw.errors import ConfigError

    cfg = FusionConfig(confirm_m=1, merge_radius_m=0.0, assoc_quiet_models=("manoeuvre", "ncv"))
    cfg.check()
    assert _taker(200e3, quiet_above_m=60e3, cfg=cfg) == "B"
    with pytest.raises(ConfigError, match="assoc_quiet_models"):
        FusionConfig(assoc_quiet_models=("sideways",)).check()

"""Exo-atmospheric starts and manoeuvre-model exit (gateway/fusion/exo.py).

Hand-built, one radar: a track 200 km up and one 5 km up, both with their
manoeuvre model at μ = 0.6 (a young track that has just taken a neighbour's
plot). Five seconds later the exo track has left the manoeuvre model at
``exo_exit_rate_hz`` (μ ≈ 0.6·e^-1 plus what flows in), the aircraft keeps it
at ``imm_switch_rate_hz``; and a one-plot start above the atmosphere gets the
wide velocity prior of a ballistic object, one at 5 km the air-target prior.
With ``exo_exit_rate_hz = exo_init_speed_sigma_mps = 0`` (the engine before)
both tracks keep μ ≈ 0.59 and both starts get 2 km/s.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.motion import imm_combine
from hilgw.geo import local_geometry
from tests.unit.test_fusion_quiet import ACCEL, S, _plots

EXO, AIR = np.array([300e3, 0.0, 200e3]), np.array([150e3, 20e3, 5e3])
BASE = FusionConfig(confirm_m=1, merge_radius_m=0.0, exo_init_speed_sigma_mps=8000.0, exo_exit_rate_hz=0.2)
BEFORE = dataclasses.replace(BASE, exo_init_speed_sigma_mps=0.0, exo_exit_rate_hz=0.0)


def _engine(cfg: FusionConfig) -> Engine:
    e = Engine(cfg, accel=ACCEL)
    e.add_sensor(local_geometry("r0", np.zeros(3)))
    e.step(_plots(np.array([EXO, AIR]), 0), 0)
    assert e.store.n == 2
    return e


def _manoeuvre_mu_after(cfg: FusionConfig, dt_s: float) -> tuple[float, float]:
    e = _engine(cfg)
    st = e.store
    exo_row = int(np.argmax(st.x[:2, 2]))
    for i in range(2):
        st.xm[i, :, 3:] = 0.0
        st.Pm[i] = np.diag([100.0**2] * 3 + [50.0**2] * 3)
        st.mu[i] = [0.1, 0.3, 0.6]
    st.x[:2], st.P[:2] = imm_combine(st.xm[:2], st.Pm[:2], st.mu[:2])
    # A plot far from both: the table is advanced to it, neither track updated.
    t = int(dt_s * S)
    e.step(_plots(np.array([[200e3, -150e3, 40e3]]), t), t)
    mi = cfg.models.index("manoeuvre")
    return float(st.mu[exo_row, mi]), float(st.mu[1 - exo_row, mi])


def test_exo_track_leaves_its_manoeuvre_model_an_aircraft_does_not() -> None:
    exo, air = _manoeuvre_mu_after(BASE, 5.0)
    assert exo < 0.3
    assert air > 0.55


def test_before_both_tracks_kept_the_manoeuvre_model() -> None:
    exo, air = _manoeuvre_mu_after(BEFORE, 5.0)
    assert exo > 0.55
    assert air > 0.55


def _start_speed_sigma(cfg: FusionConfig) -> tuple[float, float]:
    e = _engine(cfg)
    st = e.store
    exo_row = int(np.argmax(st.x[:2, 2]))
    # The largest velocity spread of each new track (its tangential prior).
    sig = [float(np.sqrt(np.linalg.eigvalsh(st.P[i, 3:, 3:]).max())) for i in range(2)]
    return sig[exo_row], sig[1 - exo_row]


def test_exo_start_gets_the_ballistic_velocity_prior() -> None:
    exo, air = _start_speed_sigma(BASE)
    assert 7000.0 < exo < 9000.0
    assert 1500.0 < air < 2500.0


def test_before_every_start_got_the_air_prior() -> None:
    exo, air = _start_speed_sigma(BEFORE)
    assert 1500.0 < exo < 2500.0
    assert 1500.0 < air < 2500.0


def test_an_exo_track_coasts_through_a_longer_gap_than_an_aircraft() -> None:
    """Both tracks miss every batch (a far plot keeps the batches coming): the
    aircraft's is dropped once ``drop_misses`` have gone by ``coast_after_s``
    without update, the exo-atmospheric one, whose ballistic prediction holds,
    only at ``exo_drop_after_s``."""
    cfg = dataclasses.replace(BASE, coast_after_s=2.0, drop_misses=6, exo_drop_after_s=4.0)
    e = _engine(cfg)
    st = e.store
    ids = {
        "exo": int(st.track_id[int(np.argmax(st.x[:2, 2]))]),
        "air": int(st.track_id[int(np.argmin(st.x[:2, 2]))]),
    }
    alive: dict[float, set[int]] = {}
    for k in range(1, 15):
        t = int(k * S / 3)
        e.step(_plots(np.array([[200e3, -150e3, 40e3 + 1e3 * k]]), t), t)
        alive[k / 3] = set(st.track_id[: st.n].tolist())
    assert {ids["air"], ids["exo"]} <= alive[1.0]
    assert ids["air"] not in alive[3.0]  # dropped after 2 s and 6 misses
    assert ids["exo"] in alive[3.0]
    assert ids["exo"] not in alive[14 / 3]  # gone after 4 s

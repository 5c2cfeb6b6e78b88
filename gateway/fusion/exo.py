"""What the engine does differently for exo-atmospheric tracks (above
``assoc_quiet_above_m``, height read from the gravity model): an unpowered
object there follows gravity, moves at kilometres per second and cannot
manoeuvre.

* One-plot starts above that height get ``exo_init_speed_sigma_mps`` (a
  ballistic object moves at 2-7 km/s: the air-target prior of 0 ± 2 km/s
  puts a 3 km/s object 1.5 σ out, and the young track needs its manoeuvre
  model to catch up).
* The models of ``assoc_quiet_models`` (the manoeuvre model) are left at
  ``exo_exit_rate_hz``: there they only carry a young track's velocity to
  convergence, and a long stay keeps the track's gain high, so that it
  follows its neighbours' plots in a complex (velocity σ 120 m/s at 10-20 s
  against 36 m/s with oracle association).

* A confirmed exo track is dropped on ``drop_misses`` only once it has gone
  ``exo_drop_after_s`` (not ``coast_after_s``) without update: inside a
  complex at Pd 0.8 a track goes a few batches without a plot often (a
  neighbour wins it), and its ballistic prediction holds over seconds
  (cso seeds 1-5: 98.8 % -> 99.3 % held, 1.417 -> 1.391 ids per object;
  the 40-complex Pd 0.7 variant 92.6 % -> 97.5 % held).

Measured together on the cso bench (benchmarks/fusion/RESULTS.md): OSPA
about 7 m lower over five seeds, track ids per object unchanged; the gap to
the goals is the one-scan assignment itself (gateway/bench_audit.py).

Air targets and the flat-gravity straight bench (which reads as 0 m high)
are untouched. The association cost's part of the rule is
:func:`gateway.fusion.twoscan.quiet_logsumexp`.
"""

from __future__ import annotations

import numpy as np

from gateway.fusion.api import F64
from gateway.fusion.config import FusionConfig
from gateway.fusion.measure import plot_to_state
from gateway.fusion.motion import altitude_from_gravity
from gateway.fusion.view import EngineView

__all__ = ["exo_rows", "plot_starts", "quiet_models", "switch_rates"]


def exo_rows(engine: EngineView, x: F64) -> np.ndarray:
    """Which of the states ``x`` (N, 6) lie above ``assoc_quiet_above_m``."""
    out: np.ndarray = altitude_from_gravity(engine.accel, x) > engine.cfg.assoc_quiet_above_m
    return out


def quiet_models(cfg: FusionConfig) -> np.ndarray:
    """Indices into ``cfg.models`` of the models of ``assoc_quiet_models`` (those running)."""
    return np.array([cfg.models.index(m) for m in cfg.assoc_quiet_models if m in cfg.models], np.intp)


def plot_starts(engine: EngineView, s: int, polar: F64, sigma: F64) -> tuple[F64, F64]:
    """One-plot start states (N, 6) and covariances of sensor ``s``'s plots
    (:func:`gateway.fusion.measure.plot_to_state`), with the exo velocity
    prior for plots above the exo height."""
    cfg = engine.cfg
    o, tl = engine.origins[s], engine.to_locals[s]
    x, P = plot_to_state(o, tl, polar, sigma, cfg.init_speed_sigma_mps)
    if cfg.exo_init_speed_sigma_mps <= 0.0 or x.shape[0] == 0:
        return x, P
    exo = exo_rows(engine, x)
    if exo.any():
        _, P[exo] = plot_to_state(o, tl, polar[exo], sigma[exo], cfg.exo_init_speed_sigma_mps)
    return x, P


def switch_rates(engine: EngineView, xm: F64) -> float | tuple[float, ...] | F64:
    """IMM exit rates for rows ``xm`` (N, M, 6): ``imm_switch_rate_hz``, with
    the models of ``assoc_quiet_models`` of exo rows at ``exo_exit_rate_hz``
    (0: off)."""
    cfg = engine.cfg
    base = cfg.imm_switch_rate_hz
    quiet = quiet_models(cfg)
    if cfg.exo_exit_rate_hz <= 0.0 or quiet.size == 0 or xm.shape[0] == 0:
        return base
    exo = exo_rows(engine, xm[:, 0])
    if not exo.any():
        return base
    rate = np.array(np.broadcast_to(np.asarray(base, np.float64), (xm.shape[0], len(cfg.models))))
    rate[np.ix_(exo, quiet)] = cfg.exo_exit_rate_hz
    return rate

"""Fusion engine parameters: one frozen dataclass with documented defaults.

The gateway's pydantic config maps onto :class:`FusionConfig`; the engine never
re-validates it beyond :meth:`FusionConfig.check`. Units are SI (m, s, m/s);
durations are nanoseconds where they are compared with report times.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
from dataclasses import dataclass
from typing import Any

from hilgw.errors import ConfigError
from hilgw.limits import MAX_ABS_FLOAT  # not hilgw.tomlconfig: no pydantic in the worker

MODEL_NCV = "ncv"
MODEL_BALLISTIC = "ballistic"
MODEL_MANOEUVRE = "manoeuvre"
KNOWN_MODELS = (MODEL_NCV, MODEL_BALLISTIC, MODEL_MANOEUVRE)
ASSOC_JPDA = "jpda"
ASSOC_GNN = "gnn"
ASSOC_COST_COMBINED = "combined"
ASSOC_COST_MIXTURE = "mixture"


@dataclass(frozen=True, slots=True)
class FusionConfig:
    """Every tunable of the fusion engine.

    Motion models
      ``models``: the IMM model set, any of ``"ncv"`` (nearly-constant velocity,
      air targets in straight flight), ``"ballistic"`` (gravity + small
      process noise) and ``"manoeuvre"`` (NCV with a large process noise: a
      turning or pulling target, BLK §11.7). One model means a plain EKF, no
      mixing. The default holds all three, so one configuration serves air
      and ballistic targets alike (figures: benchmarks/fusion/RESULTS.md).
      ``q_ncv`` / ``q_ballistic`` / ``q_manoeuvre``: white-noise acceleration
      power spectral density [m²/s³] of each model (Bar-Shalom, Li &
      Kirubarajan 2001, §6.2.2).
      ``imm_switch_rate_hz``: rate of leaving each model, one for all or one
      per model; the Markov matrix for a step of dt is p_stay =
      exp(-rate·dt), spread evenly over the others.
      ``imm_initial``: initial model probabilities (same order as ``models``).

    Gating and association
      ``gate_prob``: gate probability; the Mahalanobis threshold is the
      chi-square quantile with the measurement's dimension.
      ``pregate_sigmas``: spatial pre-gate radius as a multiple of the largest
      1-sigma position spread of a track plus of a report (grid query).
      ``pregate_max_m``: upper bound of that radius, so one lost track cannot
      make the pre-gate quadratic.
      ``t2t_gate_prob``: gate probability of a new sensor-track pairing
      (6-D state difference); ``gate_prob`` is that of plots.
      ``t2t_persist_gate_prob``: looser gate a persistent sensor-track pairing
      must pass to be kept (track-to-track association).

      ``association``: ``"gnn"`` (default) updates a track from the plot
      the global-nearest-neighbour assignment gave it. ``"jpda"`` updates a
      confirmed track from every plot in its gate, weighted by joint
      association probabilities (the "cheap JPDA" of Fitzgerald 1990, on
      the sparse gate graph); the hard assignment still decides which plots
      count as hits and which start tracks (closely spaced tracks coalesce
      under it: benchmarks/fusion/RESULTS.md). Sensor tracks always use GNN.
      ``assoc_cost``: the GNN cost of a (track, plot) pair: ``"mixture"``
      (default), -2 ln Σ_m μ_m N(ν_m; 0, S_m) over the models, or
      ``"combined"``, -2 ln N(ν; 0, S) with the IMM's moment-matched state
      (the former default; figures: benchmarks/fusion/RESULTS.md).
      ``assoc_quiet_above_m``: tracks higher than this above the Earth (read
      from the gravity model) are exo-atmospheric and cannot manoeuvre: the
      mixture cost leaves the models ``assoc_quiet_models`` out (default
      the manoeuvre model; the filter keeps them). A very large value (1e9)
      turns this off.
      ``gnn_spread``: a confirmed track keeps GNN's updated mean but takes
      the covariance of the PDA mixture over the plots in its gate, so a
      track that took one of several plots it cannot tell apart does not
      claim to know which (:mod:`gateway.fusion.spread`).
      ``two_scan``: look one batch ahead before an assignment between
      closely spaced tracks becomes final (:mod:`gateway.fusion.twoscan`):
      two tracks that took plots of one batch and now share a plot in their
      gates swap those plots when the swapped histories explain the two
      batches better by more than ``two_scan_margin`` (in -2 ln likelihood).
      ``mht_window``: plot batches over which closely spaced tracks keep
      alternative assignments (:mod:`gateway.fusion.mht`, a sliding-window
      multi-scan assignment with N-scan pruning); 0 or 1: GNN decides each
      batch at once. ``mht_hypotheses``: global hypotheses kept per cluster.
      ``p_detect``: detection probability assumed by the association weights
      (and by the MHT's hypothesis scores).
      ``clutter_density``: false plots per unit of measurement volume
      (m·rad², range × azimuth × elevation) assumed by the weights; a range
      rate adds ``clutter_range_rate_span_mps`` as a fourth extent.

    Initiation (plots)
      ``init_speed_sigma_mps``: 1-sigma of each velocity component of a track
      started from one plot (zero mean).
      ``init_suppress_prob``: a plot no track took starts no track when it
      lies inside this (wider) gate of a track that took no plot of the
      batch: it is most likely that target's outlier, and a duplicate track
      would steal the next plots. A track that did take a plot has had its
      one detection of the scan, so a second plot near it is another object
      (closely spaced objects, a separating fragment) and starts a track.
      ``init_max_speed_mps``: velocity bound used to size the pre-gate of young
      tracks (kept as a hard cap of the velocity spread).

      ``exo_refit_every_s``: how often the exo-atmospheric tracks are
      refitted to the plots their gates took over the last
      ``exo_refit_window_s`` (each a ballistic arc plus a straight line,
      origins by expectation-maximisation: :mod:`gateway.fusion.refit`);
      0 turns this off.

    Track life cycle (opportunities: a batch from a sensor that has already
    contributed to the track)
      ``confirm_m`` of ``confirm_n`` hits confirm a tentative track.
      ``tentative_drop_misses`` consecutive misses drop a tentative track.
      ``coast_misses`` consecutive misses make a confirmed track coast.
      ``drop_misses`` consecutive misses once it has gone ``coast_after_s``
      without update (six sensors give six opportunities a second: a
      second's gap of all of them is no reason to drop a track), or
      ``drop_after_s`` without update, drop it; ``coast_after_s`` without
      update makes it coast, or drops a tentative track (a silent sensor
      sends no batch, so no miss is ever counted against its tracks: time
      is the backstop).
      ``exo_drop_after_s``: the time without update that replaces
      ``coast_after_s`` in that drop rule for exo-atmospheric tracks (above
      ``assoc_quiet_above_m``): their ballistic prediction holds, and inside
      a complex a track often goes a few batches without winning a plot
      (:mod:`gateway.fusion.exo`).
      ``sensor_track_confirms``: a system track started from a sensor's own
      track is confirmed at once (trusting the sensor's confirmation). Off
      by default: the demo's land radars confirm clutter tracks that live
      about 3 scans, and each became a confirmed, then coasting, system
      track for up to ``drop_after_s`` (false tracks 6.2 -> 2.0 per picture,
      benchmarks/fusion/RESULTS.md); such a track now goes through M of N
      like a plot track (``confirm_m`` updates, about 1 s at 2 Hz).

    Duplicates
      ``merge_radius_m``: two non-tentative tracks closer than this, fed by
      disjoint sets of sensors, are tested for being one target
      (:mod:`gateway.fusion.merge`); 0 turns merging off. A track whose
      position is uncertain is also tested against every track its
      covariance could reach (the statistical test decides), and one whose
      widest position 1-sigma exceeds this radius (started from reports of
      unknown height) is not confirmed inside the ``init_suppress_prob``
      gate of a confirmed track fed by other sensors.
      ``merge_max_radius_m``: the farthest two tracks are ever tested apart
      (bounds the search of a track of huge covariance).
      ``merge_gate_prob``: gate probability of that test (6-D).
      ``stitch_window_s``: a confirmed air track the life cycle drops is
      kept this long; a track that confirms meanwhile where the lost one
      could have gone (its state predicted with ``q_manoeuvre``, 6-D
      Mahalanobis inside ``stitch_gate_prob``) continues it under its id
      (:mod:`gateway.fusion.stitch`: a target that outran its track in a
      hard turn keeps its id). 0 turns this off.

    Time
      ``scan_window_s``: reports of one sensor within this span form one batch
      (each report is still filtered at its own time).
      ``oos_lag_s``: how late a report may be and still be used (retrodicted
      update, Bar-Shalom 2002 algorithm B1); older reports are counted and
      dropped.

    Bias
      ``estimate_bias``: estimate a per-sensor (range, azimuth, elevation)
      registration bias from the innovations of confirmed multi-sensor
      tracks; ``bias_gain`` is the smoothing gain of that estimate.
    """

    models: tuple[str, ...] = (MODEL_NCV, MODEL_BALLISTIC, MODEL_MANOEUVRE)
    q_ncv: float = 0.5
    q_ballistic: float = 0.1
    q_manoeuvre: float = 3000.0
    imm_switch_rate_hz: float | tuple[float, ...] = 0.005
    imm_initial: tuple[float, ...] = (0.45, 0.45, 0.1)

    gate_prob: float = 0.99999
    pregate_sigmas: float = 6.0
    pregate_max_m: float = 50_000.0
    t2t_gate_prob: float = 0.9995
    t2t_persist_gate_prob: float = 0.999999
    association: str = ASSOC_GNN
    assoc_cost: str = ASSOC_COST_MIXTURE
    assoc_quiet_above_m: float = 60_000.0
    assoc_quiet_models: tuple[str, ...] = (MODEL_MANOEUVRE,)
    gnn_spread: bool = True
    two_scan: bool = False
    two_scan_margin: float = 2.0
    mht_window: int = 0
    mht_hypotheses: int = 4
    p_detect: float = 0.8
    clutter_density: float = 1e-5
    clutter_range_rate_span_mps: float = 2000.0

    init_speed_sigma_mps: float = 2000.0
    init_suppress_prob: float = 0.9999999
    init_max_speed_mps: float = 8000.0
    exo_init_speed_sigma_mps: float = 8000.0
    exo_exit_rate_hz: float = 0.2
    exo_drop_after_s: float = 4.0
    exo_refit_every_s: float = 3.0
    exo_refit_window_s: float = 60.0

    confirm_m: int = 3
    confirm_n: int = 5
    tentative_drop_misses: int = 2
    coast_misses: int = 2
    drop_misses: int = 6
    coast_after_s: float = 2.0
    drop_after_s: float = 10.0
    sensor_track_confirms: bool = False

    merge_radius_m: float = 5000.0
    merge_max_radius_m: float = 500_000.0
    merge_gate_prob: float = 0.9999
    stitch_window_s: float = 10.0
    stitch_gate_prob: float = 0.9999

    scan_window_s: float = 0.1
    oos_lag_s: float = 2.0

    estimate_bias: bool = False
    bias_gain: float = 0.01

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first field out of range."""
        self._check_types()
        if not self.models or any(m not in KNOWN_MODELS for m in self.models):
            raise ConfigError("fusion.models", f"{self.models!r}: each must be one of {KNOWN_MODELS}")
        if len(set(self.models)) != len(self.models):
            raise ConfigError("fusion.models", f"{self.models!r} has a duplicate")
        if len(self.imm_initial) != len(self.models) or abs(sum(self.imm_initial) - 1.0) > 1e-6:
            raise ConfigError("fusion.imm_initial", f"{self.imm_initial!r}: one per model, summing to 1")
        quiet = self.assoc_quiet_models
        if any(m not in KNOWN_MODELS for m in quiet):
            raise ConfigError("fusion.assoc_quiet_models", f"{quiet!r}: each must be one of {KNOWN_MODELS}")
        if self.assoc_cost not in (ASSOC_COST_COMBINED, ASSOC_COST_MIXTURE):
            raise ConfigError("fusion.assoc_cost", f"{self.assoc_cost!r}: must be 'combined' or 'mixture'")
        if self.association not in (ASSOC_JPDA, ASSOC_GNN):
            raise ConfigError("fusion.association", f"{self.association!r}: must be 'jpda' or 'gnn'")
        if not 0.0 < self.p_detect < 1.0:
            raise ConfigError("fusion.p_detect", f"{self.p_detect!r}: must be in (0, 1)")
        probs = (self.gate_prob, self.t2t_gate_prob, self.t2t_persist_gate_prob, self.merge_gate_prob)
        if not all(0.0 < p < 1.0 for p in probs):
            raise ConfigError("fusion.gate_prob", "gate probabilities must be in (0, 1)")
        if not 0.0 < self.stitch_gate_prob < 1.0:
            raise ConfigError("fusion.stitch_gate_prob", f"{self.stitch_gate_prob!r}: must be in (0, 1)")
        if not 1 <= self.confirm_m <= self.confirm_n <= 62:
            raise ConfigError(
                "fusion.confirm_m", f"{self.confirm_m}/{self.confirm_n}: need 1 <= M <= N <= 62"
            )
        for name in (
            "q_ncv",
            "q_ballistic",
            "q_manoeuvre",
            "clutter_density",
            "clutter_range_rate_span_mps",
            "init_speed_sigma_mps",
            "drop_after_s",
            "coast_after_s",
            "pregate_sigmas",
        ):
            if getattr(self, name) <= 0.0:
                raise ConfigError(f"fusion.{name}", f"{getattr(self, name)!r}: must be > 0")
        rates = self.imm_switch_rate_hz
        if isinstance(rates, tuple) and len(rates) != len(self.models):
            raise ConfigError("fusion.imm_switch_rate_hz", f"{rates!r}: one rate, or one per model")
        if min(rates if isinstance(rates, tuple) else (rates,)) < 0.0:
            raise ConfigError("fusion.imm_switch_rate_hz", f"{rates!r}: must be >= 0")
        for name in (
            "scan_window_s",
            "oos_lag_s",
            "bias_gain",
            "merge_radius_m",
            "merge_max_radius_m",
            "two_scan_margin",
            "exo_init_speed_sigma_mps",
            "exo_exit_rate_hz",
            "stitch_window_s",
            "exo_drop_after_s",
            "exo_refit_every_s",
            "exo_refit_window_s",
        ):
            if getattr(self, name) < 0.0:
                raise ConfigError(f"fusion.{name}", f"{getattr(self, name)!r}: must be >= 0")
        if self.mht_window < 0 or self.mht_hypotheses < 1:
            raise ConfigError("fusion.mht_window", "mht_window must be >= 0 and mht_hypotheses >= 1")
        if self.drop_misses < 1 or self.coast_misses < 1 or self.tentative_drop_misses < 1:
            raise ConfigError("fusion.drop_misses", "every *_misses count must be >= 1")

    def _check_types(self) -> None:
        """Each field has its default's type, and every number is finite and
        bounded like the rest of the config (hilgw.tomlconfig.StrictModel):
        ``fusion.params`` arrives as an untyped table, so a string or an
        ``inf`` would otherwise reach the filter arithmetic."""
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            # A scalar field that also takes one value per model
            # (imm_switch_rate_hz: float | tuple[float, ...]).
            per_model = isinstance(value, tuple) and "tuple" in str(f.type)
            items = value if isinstance(default, tuple) or per_model else (value,)
            if isinstance(default, tuple) and not isinstance(value, tuple):
                raise ConfigError(f"fusion.{f.name}", f"{value!r}: must be a list")
            kind = type(default[0]) if isinstance(default, tuple) else type(default)
            for v in items:
                _check_value(f.name, v, kind)


def _check_value(name: str, v: Any, kind: type) -> None:
    if kind is bool:
        ok = isinstance(v, bool)
    elif kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = isinstance(v, int | float) and not isinstance(v, bool)
    else:
        ok = isinstance(v, kind)
    if not ok:
        raise ConfigError(f"fusion.{name}", f"{reprlib.repr(v)}: must be {kind.__name__}")
    # abs() first: math.isfinite overflows on a huge int, a comparison does not.
    if kind in (int, float) and (abs(v) > MAX_ABS_FLOAT or not math.isfinite(v)):
        limit = f"must be finite, of magnitude <= {MAX_ABS_FLOAT:g}"
        raise ConfigError(f"fusion.{name}", f"{reprlib.repr(v)}: {limit}")


def config_from_params(params: dict[str, Any]) -> FusionConfig:
    """The checked :class:`FusionConfig` of a ``fusion.params`` table (``gravity``
    is the engine's, not a field here). Raises :class:`ConfigError`."""
    p = {k: v for k, v in params.items() if k != "gravity"}
    if params.get("gravity", "ecef") not in ("ecef", "flat"):
        raise ConfigError("fusion.gravity", f"{params['gravity']!r}: must be 'ecef' or 'flat'")
    names = {f.name for f in dataclasses.fields(FusionConfig)}
    unknown = sorted(set(p) - names)
    if unknown:
        raise ConfigError("fusion.params", f"unknown keys {unknown}; known: {sorted(names)}")
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
    cfg = FusionConfig(**kw)
    cfg.check()
    return cfg

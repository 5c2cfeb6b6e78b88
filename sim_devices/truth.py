"""Truth trajectories of a scenario's targets, evaluated over stacked arrays.

:func:`truth_at` gives every target's ECEF state (x, y, z, vx, vy, vz) at one
or many scenario times, with an ``active`` mask (the target exists: an air
target between its first and last waypoint, a ballistic target between launch
and impact). Inactive rows hold NaN so a missed mask shows at once.

* Ballistic targets: exact Keplerian states from the ellipse solved at load
  (:mod:`sim_devices.kepler`), turned from ECI into ECEF.
* Air targets: each leg runs along the great circle between the geocentric
  directions of its two waypoints (spherical linear interpolation of the unit
  vectors u1, u2 over the angle Ω between them) while the geocentric radius
  changes linearly, so the altitude stays near the waypoints' (a straight
  ECEF chord would sag d²/8R, 200 m over a 100 km leg). With s ∈ [0, 1]:

      u(s) = (sin((1-s)Ω) u1 + sin(sΩ) u2) / sin Ω,   p(s) = r(s) u(s)
      dp/ds = (r2 - r1) u(s) + r(s) Ω (-cos((1-s)Ω) u1 + cos(sΩ) u2) / sin Ω

  and s advances at speed / leg length, so the speed is the configured one to
  within the small change of r along the leg. Positions are continuous; the
  velocity turns instantly at a waypoint.

Extension point: a new target kind (ships) adds a table class with ``at(t)``
like :class:`_AirTable` and a line in :func:`compile_truth`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pymap3d

from sim_devices import kepler
from sim_devices.scenario import AirTarget, BallisticTarget, Scenario

__all__ = ["Truth", "compile_truth", "truth_at", "truth_of"]

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _AirTable:
    """All legs of all air targets, stacked; legs of target k are ``offsets[k]:offsets[k]+counts[k]``."""

    rows: I64  # row of each air target in the truth table (K,)
    offsets: I64  # (K,)
    counts: I64  # (K,)
    t_start: F64  # (K,) first waypoint time
    t_end: F64  # (K,) last waypoint time
    leg_t0: F64  # (L,)
    leg_dur: F64  # (L,)
    u1: F64  # (L, 3)
    u2: F64  # (L, 3)
    r1: F64  # (L,)
    r2: F64  # (L,)
    omega: F64  # (L,)

    @staticmethod
    def build(targets: list[tuple[int, AirTarget]]) -> _AirTable:
        rows, offsets, counts, t_start, t_end = [], [], [], [], []
        leg_t0: list[float] = []
        leg_dur: list[float] = []
        u1s, u2s, r1s, r2s, oms = [], [], [], [], []
        for row, tgt in targets:
            wp = tgt.waypoints
            p = np.array(
                pymap3d.geodetic2ecef(
                    np.array([w.lat_deg for w in wp]), np.array([w.lon_deg for w in wp]),
                    np.array([w.alt_m for w in wp]),
                )
            ).T  # fmt: skip
            r = np.linalg.norm(p, axis=1)
            u = p / r[:, None]
            rows.append(row)
            offsets.append(len(leg_t0))
            counts.append(len(wp) - 1)
            t = tgt.start_time_s
            t_start.append(t)
            for i in range(len(wp) - 1):
                om = float(np.arccos(np.clip(np.dot(u[i], u[i + 1]), -1.0, 1.0)))
                # Leg length from the polar form of the path: ds-arc r̄Ω across, Δr along.
                length = float(np.hypot(0.5 * (r[i] + r[i + 1]) * om, r[i + 1] - r[i]))
                dur = length / tgt.speed_mps
                leg_t0.append(t)
                leg_dur.append(dur)
                u1s.append(u[i])
                u2s.append(u[i + 1])
                r1s.append(r[i])
                r2s.append(r[i + 1])
                oms.append(om)
                t += dur
            t_end.append(t)
        return _AirTable(
            rows=np.array(rows, np.int64), offsets=np.array(offsets, np.int64),
            counts=np.array(counts, np.int64), t_start=np.array(t_start), t_end=np.array(t_end),
            leg_t0=np.array(leg_t0), leg_dur=np.array(leg_dur), u1=np.array(u1s).reshape(-1, 3),
            u2=np.array(u2s).reshape(-1, 3), r1=np.array(r1s), r2=np.array(r2s), omega=np.array(oms),
        )  # fmt: skip

    def at(self, t: F64) -> tuple[F64, B]:
        """States (T, K, 6) and active mask (T, K) at times ``t`` (T,)."""
        # Which leg: the last one of each target that has started by t.
        started = (t[:, None] >= self.leg_t0[None, :]).astype(np.int64)  # (T, L)
        n_started = np.add.reduceat(started, self.offsets, axis=1)  # (T, K)
        idx = self.offsets + np.clip(n_started - 1, 0, self.counts - 1)  # (T, K)
        s = np.clip((t[:, None] - self.leg_t0[idx]) / self.leg_dur[idx], 0.0, 1.0)
        om = self.omega[idx]
        u1, u2 = self.u1[idx], self.u2[idx]
        r1, r2 = self.r1[idx], self.r2[idx]
        small = om < 1e-12  # waypoints straight above each other: a vertical leg
        sin_om = np.where(small, 1.0, np.sin(om))
        a1 = np.where(small, 1.0 - s, np.sin((1.0 - s) * om) / sin_om)
        a2 = np.where(small, s, np.sin(s * om) / sin_om)
        da1 = np.where(small, 0.0, -om * np.cos((1.0 - s) * om) / sin_om)
        da2 = np.where(small, 0.0, om * np.cos(s * om) / sin_om)
        u = a1[..., None] * u1 + a2[..., None] * u2
        du = da1[..., None] * u1 + da2[..., None] * u2
        r = r1 + s * (r2 - r1)
        out = np.empty((*idx.shape, 6))
        out[..., :3] = r[..., None] * u
        out[..., 3:] = ((r2 - r1)[..., None] * u + r[..., None] * du) / self.leg_dur[idx][..., None]
        active = (t[:, None] >= self.t_start) & (t[:, None] <= self.t_end)
        return out, active


@dataclass(frozen=True, slots=True)
class _BallisticTable:
    rows: I64  # (B,)
    a: F64
    e: F64
    n: F64
    m0: F64
    t0: F64
    p_hat: F64  # (B, 3)
    q_hat: F64  # (B, 3)
    t_launch: F64
    t_impact: F64

    @staticmethod
    def build(targets: list[tuple[int, BallisticTarget]]) -> _BallisticTable:
        orbits = [t.orbit for _, t in targets]
        return _BallisticTable(
            rows=np.array([r for r, _ in targets], np.int64),
            a=np.array([o.a for o in orbits]), e=np.array([o.e for o in orbits]),
            n=np.array([o.n for o in orbits]), m0=np.array([o.m0 for o in orbits]),
            t0=np.array([o.t0_s for o in orbits]),
            p_hat=np.array([o.p_hat for o in orbits]).reshape(-1, 3),
            q_hat=np.array([o.q_hat for o in orbits]).reshape(-1, 3),
            t_launch=np.array([t.launch_time_s for _, t in targets]),
            t_impact=np.array([t.impact_time_s for _, t in targets]),
        )  # fmt: skip

    def at(self, t: F64) -> tuple[F64, B]:
        """States (T, B, 6) in ECEF and active mask (T, B) at times ``t`` (T,)."""
        tt = t[:, None]
        eci = kepler.propagate(self.a, self.e, self.n, self.m0, self.t0, self.p_hat, self.q_hat,
                               kepler.MU_EARTH, tt)  # fmt: skip
        out = kepler.eci_to_ecef(tt, eci)
        active = (tt >= self.t_launch) & (tt <= self.t_impact)
        return out, active


@dataclass(frozen=True, slots=True)
class Truth:
    """A scenario's targets compiled into stacked tables; see :func:`truth_at`."""

    ids: tuple[str, ...]
    air: _AirTable | None
    ballistic: _BallisticTable | None

    def at(self, t_s: float | npt.ArrayLike) -> tuple[tuple[str, ...], F64, B]:
        """``(ids, states, active)``: (N, 6) and (N,) for a scalar time, (T, N, 6) and (T, N) for (T,)."""
        scalar = np.ndim(t_s) == 0
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64)).reshape(-1)
        states = np.full((t.shape[0], len(self.ids), 6), np.nan)
        active = np.zeros((t.shape[0], len(self.ids)), dtype=bool)
        for table in (self.air, self.ballistic):
            if table is None:
                continue
            x, act = table.at(t)
            states[:, table.rows] = np.where(act[..., None], x, np.nan)
            active[:, table.rows] = act
        if scalar:
            return self.ids, states[0], active[0]
        return self.ids, states, active


def compile_truth(scenario: Scenario) -> Truth:
    """Stack a scenario's targets for vectorised evaluation (done once; cached by :func:`truth_at`)."""
    air = [(i, t) for i, t in enumerate(scenario.targets) if isinstance(t, AirTarget)]
    bal = [(i, t) for i, t in enumerate(scenario.targets) if isinstance(t, BallisticTarget)]
    return Truth(
        ids=tuple(t.id for t in scenario.targets),
        air=_AirTable.build(air) if air else None,
        ballistic=_BallisticTable.build(bal) if bal else None,
    )


def truth_at(scenario: Scenario | Truth, t_s: float | npt.ArrayLike) -> tuple[tuple[str, ...], F64, B]:
    """Every target's ECEF state at scenario time(s) ``t_s`` (seconds from the scenario epoch).

    Returns ``(ids, states, active)``: target ids in file order, states
    (N, 6) (or (T, N, 6) for T times) with NaN where inactive, and the active
    mask (N,) (or (T, N)).
    """
    if isinstance(scenario, Truth):
        return scenario.at(t_s)
    return truth_of(scenario).at(t_s)


def truth_of(scenario: Scenario) -> Truth:
    """The scenario's compiled truth, built on first use and kept with the scenario."""
    truth = scenario._derived.get("truth")
    if not isinstance(truth, Truth):
        truth = compile_truth(scenario)
        scenario._derived["truth"] = truth
    return truth

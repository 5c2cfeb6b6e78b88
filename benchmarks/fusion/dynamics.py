"""Truth dynamics of the bench's families and the radar measurement function.

Shared by the scenario generator (``scenarios.py``) and the floor (``floor.py``):
the floor linearises exactly the flow the generator integrated. State order is
the bench's (x, vx, y, vy, z, vz); the frame is local Cartesian, z up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
POS = [0, 2, 4]
VEL = [1, 3, 5]

# WGS-84 (NIMA TR8350.2): GM, semi-major axis, J2.
GM = 3.986004418e14
A_EARTH = 6_378_137.0
J2 = 1.08262982e-3


def ncv_q(dt: float, q: float) -> F64:
    """White-noise-acceleration process noise (BLK §6.2.2) in (x, vx, y, vy, z, vz) order."""
    q1 = q * np.array([[dt**3 / 3.0, dt**2 / 2.0], [dt**2 / 2.0, dt]])
    return np.kron(np.eye(3), q1)


def ncv_f(dt: float) -> F64:
    """Nearly-constant-velocity transition in (x, vx, y, vy, z, vz) order."""
    return np.kron(np.eye(3), np.array([[1.0, dt], [0.0, 1.0]]))


def to_ebr(rel: F64) -> F64:
    """(…,3) position relative to a site -> (el, az, r)."""
    r = np.linalg.norm(rel, axis=-1)
    return np.stack([np.arcsin(rel[..., 2] / r), np.arctan2(rel[..., 1], rel[..., 0]), r], axis=-1)


def wrap(a: F64) -> F64:
    """Angle to [-π, π)."""
    return np.asarray((a + np.pi) % (2.0 * np.pi) - np.pi, dtype=np.float64)


def gravity(x: F64, j2: bool = True) -> F64:
    """Acceleration (N,3) of states (N,6) in the local frame: central term (+ J2).

    J2 term per Vallado, *Fundamentals of Astrodynamics*, 4th ed., eq. 8-30, with
    the spin axis along local z and the centre at (0, 0, -a).
    """
    r = x[:, POS] + np.array([0.0, 0.0, A_EARTH])
    r2 = np.einsum("ni,ni->n", r, r)
    rn = np.sqrt(r2)
    a = -(GM / (r2 * rn))[:, None] * r
    if j2:
        z2 = r[:, 2] ** 2 / r2
        k = 1.5 * J2 * GM * A_EARTH**2 / (r2 * r2 * rn)
        a[:, 0] -= k * r[:, 0] * (1.0 - 5.0 * z2)
        a[:, 1] -= k * r[:, 1] * (1.0 - 5.0 * z2)
        a[:, 2] -= k * r[:, 2] * (3.0 - 5.0 * z2)
    return np.asarray(a, dtype=np.float64)


def ballistic_step(x: F64, dt: float, j2: bool = True) -> F64:
    """Classical RK4 step of an unpowered body (states (N,6), bench order)."""

    def f(s: F64) -> F64:
        d = np.empty_like(s)
        d[:, POS] = s[:, VEL]
        d[:, VEL] = gravity(s, j2)
        return d

    k1 = f(x)
    k2 = f(x + 0.5 * dt * k1)
    k3 = f(x + 0.5 * dt * k2)
    k4 = f(x + dt * k3)
    return np.asarray(x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4), dtype=np.float64)


def turn_step(x: F64, dt: float, omega: F64) -> F64:
    """Exact horizontal coordinated turn at rate ``omega`` (N,) [rad/s], z straight."""
    out = x.copy()
    w = np.where(np.abs(omega) < 1e-9, 1e-9, omega)
    s, c = np.sin(w * dt), np.cos(w * dt)
    vx, vy = x[:, 1], x[:, 3]
    out[:, 0] = x[:, 0] + (s * vx - (1.0 - c) * vy) / w
    out[:, 2] = x[:, 2] + ((1.0 - c) * vx + s * vy) / w
    out[:, 1] = c * vx - s * vy
    out[:, 3] = s * vx + c * vy
    out[:, 4] = x[:, 4] + dt * x[:, 5]
    return out


def linear_step(x: F64, k: int, dt: float) -> F64:
    """Nearly-constant-velocity flow (``k`` unused: the signature of :data:`StepFn`)."""
    return np.asarray(x @ ncv_f(dt).T, dtype=np.float64)


def ebr_jacobian(rel: F64) -> F64:
    """d(el, az, r)/d(x, y, z) (N, 3, 3) at positions ``rel`` relative to the site."""
    x, y, z = rel[:, 0], rel[:, 1], rel[:, 2]
    rho2 = x * x + y * y
    rho = np.sqrt(rho2)
    r2 = rho2 + z * z
    r = np.sqrt(r2)
    h = np.zeros((len(rel), 3, 3))
    h[:, 0, 0] = -x * z / (r2 * rho)
    h[:, 0, 1] = -y * z / (r2 * rho)
    h[:, 0, 2] = rho / r2
    h[:, 1, 0] = -y / rho2
    h[:, 1, 1] = x / rho2
    h[:, 2] = rel / r[:, None]
    return h


# A family's truth: per step k -> k+1 the deterministic flow, so the floor can take
# its Jacobian, and the process noise intensity q [m²/s³] added on top.
StepFn = Callable[[F64, int, float], F64]


def truth_model(scen: Any, known_turns: bool = True, q_turn_cv: float | None = None) -> tuple[StepFn, F64]:
    """Rebuild a saved scenario's deterministic truth step and per-object q.

    The floor needs the flow's Jacobian along the true trajectory; the flow is
    recovered from ``params_json`` (and, for turns, from the truth itself: the turn
    rate of a step is the heading change of the true velocity over it, which is
    exact for the noise-free part and what a known-manoeuvre bound assumes).

    With ``known_turns=False`` turning targets get the nearly-constant-velocity
    flow and process noise ``q_turn_cv`` instead: a filter that does not know the
    manoeuvres (the clairvoyant reference's model for air targets).
    """
    p = json.loads(str(scen["params_json"]))
    fam = p["family"]
    n = scen["truth_state"].shape[0]
    q = (
        np.asarray(scen["truth_q"], np.float64)
        if "truth_q" in scen
        else np.full(n, float(p["q_truth_m2_s3"]))
    )
    grav = p.get("gravity", "none")
    j2 = bool(grav.get("j2", False)) if isinstance(grav, dict) else False
    x_true = np.asarray(scen["truth_state"], np.float64)
    t = np.asarray(scen["scan_time"], np.float64)

    def turn_rate(rows: slice, k: int) -> F64:
        v0, v1 = x_true[rows, k][:, [1, 3]], x_true[rows, k + 1][:, [1, 3]]
        ang = np.arctan2(v1[:, 1], v1[:, 0]) - np.arctan2(v0[:, 1], v0[:, 0])
        return wrap(ang) / (t[k + 1] - t[k])

    def ballistic(x: F64, k: int, dt: float) -> F64:
        return ballistic_step(x, dt, j2)

    def turning(x: F64, k: int, dt: float, rows: slice = slice(None)) -> F64:
        if not known_turns:
            return linear_step(x, k, dt)
        return turn_step(x, dt, turn_rate(rows, k))

    if not known_turns and q_turn_cv is not None:
        turn_rows = slice(None) if fam == "manoeuvre" else None
        if fam == "mixed":
            turn_rows = slice(*next(g["rows"] for g in p["groups"] if g["family"] == "manoeuvre"))
        if turn_rows is not None:
            q = q.copy()
            q[turn_rows] = q_turn_cv

    if fam == "straight":
        return linear_step, q
    if fam == "cso":
        return ballistic, q
    if fam == "manoeuvre":
        return turning, q
    if fam != "mixed":
        raise ValueError(f"params_json family {fam!r}: unknown (straight, cso, manoeuvre, mixed)")
    bounds = {g["family"]: slice(*g["rows"]) for g in p["groups"]}

    def step(x: F64, k: int, dt: float) -> F64:
        out = np.empty_like(x)
        out[bounds["cso"]] = ballistic(x[bounds["cso"]], k, dt)
        out[bounds["manoeuvre"]] = turning(x[bounds["manoeuvre"]], k, dt, bounds["manoeuvre"])
        out[bounds["straight"]] = linear_step(x[bounds["straight"]], k, dt)
        return out

    return step, q

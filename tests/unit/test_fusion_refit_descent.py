"""Window refit of exo-atmospheric tracks (gateway/fusion/refit.py).

Three radars, one object, the Earth's centre below the first radar (the
bench's ballistic frame). A body in free flight 200 km up stays exo the whole
time and the refit moves its track. An object flying a straight line (no
gravity) from 70 km down through ``assoc_quiet_above_m`` (60 km) keeps only
its old exo plots in the refit's window once below: a drag-free arc through
them, carried to now, lands kilometres off, which threw well-held tracks of
the mixed bench 3-13 km away (benchmarks/fusion/RESULTS.md). Its track must
stay on it, as with the refit off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from gateway.fusion.api import STATUS_COASTING, STATUS_CONFIRMED
from gateway.fusion.config import FusionConfig
from gateway.fusion.engine import Engine
from gateway.fusion.motion import altitude_from_gravity
from hilgw.geo import local_geometry
from tests.unit.test_fusion_engine import SITES, plots
from tests.unit.test_fusion_quiet import ACCEL, S
from tests.unit.test_fusion_refit import fly

CFG = FusionConfig()


def _fly(
    cfg: FusionConfig, state: Callable[[float], np.ndarray], seconds: int, seed: int
) -> tuple[Engine, list[float], set[int]]:
    """Track one object whose state at t is ``state(t)``; per scan after 10 s
    the distance of the held track nearest the truth, and every held id."""
    rng = np.random.default_rng(seed)
    e = Engine(cfg, accel=ACCEL)
    for i, p in enumerate(SITES):
        e.add_sensor(local_geometry(f"r{i}", p))
    errors: list[float] = []
    ids: set[int] = set()
    for k in range(3 * seconds):  # three radars at 1 Hz, staggered by 1/3 s
        t = k / 3.0
        t_ns = round(t * S)
        x = state(t)
        pic = e.step(plots(k % 3, x[None, :], t_ns, rng), t_ns)
        held = (pic.status == STATUS_CONFIRMED) | (pic.status == STATUS_COASTING)
        if t < 10.0:
            continue
        ids.update(int(i) for i in pic.track_id[held])
        d = np.linalg.norm(pic.x[held, :3] - x[:3], axis=1)
        errors.append(float(d.min()) if d.size else np.inf)
    return e, errors, ids


def _straight(t: float) -> np.ndarray:
    """2.1 km/s, 66 km above the Earth, descending at 400 m/s: below 60 km after about 12 s."""
    x0 = np.array([210e3, 42e3, 62e3, -2000.0, 600.0, -400.0])
    x = x0.copy()
    x[:3] += t * x0[3:]
    return x


def _free_fall_path(seconds: int) -> np.ndarray:
    """States (3·seconds + 1, 6) every 1/3 s of a body in the central field
    from 200 km up."""
    x0 = np.array([[300e3, 20e3, 200e3, -3000.0, -200.0, 300.0]])
    return fly(x0, 3 * seconds + 1, ACCEL, dt=1.0 / 3.0)[:, 0]


def test_the_straight_flyer_crosses_the_exo_height() -> None:
    # The scene below is what it says: exo at first, air for most of the run.
    h = altitude_from_gravity(ACCEL, np.array([_straight(0.0), _straight(35.0), _straight(80.0)]))
    assert h[0] > CFG.assoc_quiet_above_m > h[1] > h[2]


def test_a_track_that_came_down_below_the_exo_height_is_not_refitted_off_its_object() -> None:
    e, errors, ids = _fly(CFG, _straight, 80, seed=3)
    off, base, base_ids = _fly(dataclasses.replace(CFG, exo_refit_every_s=0.0), _straight, 80, seed=3)
    assert off.refit is None
    assert e.refit is not None
    # The scene is easy without the refit.
    assert max(base) < 500.0
    assert len(base_ids) == 1
    # Refitted while still above 60 km (a straight path read as an arc: about
    # 200 m off), never from its stale window below: 740 m and a new id
    # without the exo-now rule.
    assert max(errors) < 500.0, f"track thrown {max(errors):.0f} m off its object"
    assert ids == base_ids


def test_an_exo_track_is_still_refitted() -> None:
    path = _free_fall_path(40)
    e, errors, ids = _fly(CFG, lambda t: path[round(3 * t)], 40, seed=5)
    assert e.refit is not None
    assert e.refit.runs > 0
    assert len(ids) == 1
    assert max(errors) < 1000.0

"""Scenario files: validation at load, one-line errors naming the key, the bundled demo."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pymap3d
import pytest

from hilgw.errors import ConfigError
from hilgw.geo import angle_diff, ecef_to_polar
from sim_devices.scenario import (
    AirTarget,
    BallisticTarget,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
    resolve_scenario,
)

BASE: dict[str, Any] = {
    "scenario": {"name": "t", "duration_s": 60, "seed": 1},
    "sites": [{"id": "s1", "lat_deg": 45.0, "lon_deg": 10.0, "alt_m": 20.0, "yaw_deg": 0.0}],
    "sensors": [
        {
            "id": "r1",
            "site": "s1",
            "kind": "serial_radar",
            "update_hz": 2.0,
            "range_max_m": 100000.0,
            "sigma_range_m": 10.0,
            "sigma_angle_mrad": 1.0,
            "sigma_range_rate_mps": 1.0,
        }
    ],
    "targets": [
        {
            "id": "a1",
            "kind": "air",
            "speed_mps": 200.0,
            "waypoints": [
                {"lat_deg": 45.3, "lon_deg": 10.0, "alt_m": 5000.0},
                {"lat_deg": 45.1, "lon_deg": 10.1, "alt_m": 4000.0},
            ],
        },
        {
            "id": "b1",
            "kind": "ballistic",
            "launch_lat_deg": 47.0,
            "launch_lon_deg": 10.0,
            "impact_lat_deg": 45.1,
            "impact_lon_deg": 10.0,
            "flight_time_s": 240.0,
        },
    ],
}


def mutated(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """BASE with the item at ``path`` set to ``value`` (or deleted when value is ...)."""
    raw = copy.deepcopy(BASE)
    node: Any = raw
    for p in path[:-1]:
        node = node[p]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


def test_base_is_valid_and_solved() -> None:
    scn = parse_scenario(copy.deepcopy(BASE))
    assert [s.id for s in scn.sensors] == ["r1"]
    assert isinstance(scn.targets[0], AirTarget)
    bm = scn.targets[1]
    assert isinstance(bm, BallisticTarget)
    assert bm.impact_time_s == pytest.approx(240.0)
    assert 0.0 < bm.orbit.e < 1.0
    assert scn.wire_id("r1") == 1  # default: 1 + position


@pytest.mark.parametrize(
    ("path", "value", "key", "reason"),
    [
        # unknown keys, at every level
        (("sensors", 0, "bogus"), 1, "sensors[r1].bogus", "unknown key"),
        (("scenario", "nmae"), "x", "scenario.nmae", "unknown key"),
        (("targets", 0, "waypoints", 1, "speed"), 3, "targets[a1].waypoints[1].speed", "unknown key"),
        (("targets", 1, "drag"), 0.3, "targets[b1].drag", "unknown key"),
        # wrong types and out-of-range values
        (("sensors", 0, "update_hz"), "fast", "sensors[r1].update_hz", "valid number"),
        (("sensors", 0, "update_hz"), 0, "sensors[r1].update_hz", "greater than 0"),
        (("sites", 0, "lat_deg"), 91.0, "sites[s1].lat_deg", "less than or equal to 90"),
        (("sensors", 0, "detection_probability"), 1.5, "sensors[r1].detection_probability", "1"),
        (("targets", 0, "speed_mps"), -1.0, "targets[a1].speed_mps", "greater than 0"),
        (
            ("targets", 0, "waypoints"),
            [{"lat_deg": 45, "lon_deg": 10, "alt_m": 0}],
            "targets[a1].waypoints",
            "at least 2",
        ),
        (("targets", 0, "kind"), "ship", "targets[a1]", "'air', 'ballistic'"),
        # missing keys
        (("sensors", 0, "range_max_m"), ..., "sensors[r1].range_max_m", "Field required"),
        (("scenario",), ..., "scenario", "Field required"),
        # cross-field rules
        (("sensors", 0, "site"), "nowhere", "sensors[r1].site", "no site 'nowhere'"),
        (("sensors", 0, "sigma_range_m"), 1000.0, "sensors[r1]", "exceeds"),
        (("sensors", 0, "range_min_m"), 2e5, "sensors[r1]", "range_min_m must be below"),
        (("targets", 1, "apogee_m"), 1e5, "targets[b1]", "exactly one of"),
        (("targets", 1, "flight_time_s"), 20.0, "targets[b1].flight_time_s", "too short"),
        (("targets", 1, "flight_time_s"), 24.0, "targets[b1].flight_time_s", "below the ground"),
        (
            ("targets", 0, "waypoints", 1),
            {"lat_deg": 45.3, "lon_deg": 10.0, "alt_m": 5000.0},
            "targets[a1].waypoints[1]",
            "repeats",
        ),
    ],
)
def test_bad_scenario_is_one_line_naming_the_key(
    path: tuple[str | int, ...], value: Any, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(mutated(path, value), source="bad.toml")
    msg = str(info.value)
    assert "\n" not in msg
    assert info.value.key == f"bad.toml: {key}", msg
    assert reason in info.value.reason, msg


def test_duplicate_ids_are_rejected() -> None:
    raw = copy.deepcopy(BASE)
    raw["targets"].append(copy.deepcopy(raw["targets"][0]))
    with pytest.raises(ConfigError, match=r"targets\[a1\]\.id: id 'a1' appears twice"):
        parse_scenario(raw)
    raw = copy.deepcopy(BASE)
    raw["sensors"].append(dict(raw["sensors"][0], id="r2", wire_id=1))
    with pytest.raises(ConfigError, match=r"sensors\[r2\]\.wire_id: wire id 1 is already used by 'r1'"):
        parse_scenario(raw)


def test_apogee_is_solved_for() -> None:
    raw = mutated(("targets", 1, "flight_time_s"), ...)
    raw["targets"][1]["apogee_m"] = 120_000.0
    bm = parse_scenario(raw).targets[1]
    assert isinstance(bm, BallisticTarget)
    assert 60.0 < bm.impact_time_s < 1000.0
    # An apogee far too low for the distance has no arc at all.
    raw["targets"][1]["apogee_m"] = 1.0
    with pytest.raises(ConfigError, match=r"targets\[b1\]\.apogee_m: no free-flight arc"):
        parse_scenario(raw)


def test_load_scenario_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text("[scenario\nname=1", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text(
        '[scenario]\nname = "g"\n[[sites]]\nid = "s"\nlat_deg = 1\nlon_deg = 2\nalt_m = 3\nbogus = 4\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_scenario(good)
    assert str(info.value) == "good.toml: sites[s].bogus: unknown key"


def test_builtin_demo_ships_and_resolves() -> None:
    assert "demo" in builtin_scenarios()
    demo = resolve_scenario("builtin:demo")
    kinds_by_id = {s.id: s.kind for s in demo.sensors}
    assert kinds_by_id == {
        "radar-fwd": "serial_radar",
        "radar-rear": "serial_radar",
        "ew-ship-a": "asterix",
        "ew-ship-b": "asterix",
    }
    kinds = [t.kind for t in demo.targets]
    assert kinds.count("ballistic") == 2
    assert kinds.count("air") >= 3
    assert demo.wire_id("radar-fwd") != demo.wire_id("radar-rear")
    with pytest.raises(ConfigError, match="no built-in scenario 'nope'"):
        resolve_scenario("builtin:nope")


def test_geometry_follows_the_site_yaw() -> None:
    raw = mutated(("sites", 0, "yaw_deg"), 90.0)
    g = parse_scenario(raw).geometry("r1")
    # Yaw 90°: forward is east, so a point due east of the site is at azimuth 0
    # and one due north at 270° (clockwise from forward).
    east = np.array(pymap3d.enu2ecef(10_000.0, 0.0, 0.0, 45.0, 10.0, 20.0))
    north = np.array(pymap3d.enu2ecef(0.0, 10_000.0, 0.0, 45.0, 10.0, 20.0))
    pol = ecef_to_polar(g.origin, g.to_local, np.array([[*east, 0, 0, 0], [*north, 0, 0, 0]]))
    assert angle_diff(pol[:, 1], np.radians([0.0, 270.0])) == pytest.approx([0.0, 0.0], abs=1e-9)

"""Scenario text for the CAN radar tests: one radar on site "s" and one air
target always in its coverage (P_d = 1, no clutter), with its fault timeline."""

from __future__ import annotations

from tests.waiting import eventually

#: The scenario sensor id of the CAN radar.
SENSOR = "radar-can"


def scenario_toml(
    channel: str,
    faults: str = "",
    can_extra: str = "",
    sensor_extra: str = "",
    *,
    interface: str = "virtual",
    update_hz: float = 10.0,
    sensor: str = SENSOR,
) -> str:
    """The scenario, its radar on ``interface``/``channel``; ``faults`` from :func:`fault`."""
    return f"""
[scenario]
name = "can-radar"
seed = 3

[[sites]]
id = "s"
lat_deg = 52.0
lon_deg = 4.0
alt_m = 10.0

[[sensors]]
id = "{sensor}"
site = "s"
kind = "can_radar"
update_hz = {update_hz}
range_max_m = 100000.0
sigma_range_m = 10.0
sigma_angle_mrad = 1.0
sigma_range_rate_mps = 1.0
detection_probability = 1.0
clutter_rate = 0.0
latency_s = 0.0
can = {{ interface = "{interface}", channel = "{channel}"{can_extra} }}
{sensor_extra}

[[targets]]
kind = "air"
id = "t1"
speed_mps = 200.0
waypoints = [
  {{ lat_deg = 52.2, lon_deg = 4.0, alt_m = 3000.0 }},
  {{ lat_deg = 52.2, lon_deg = 4.6, alt_m = 3000.0 }},
]
{faults}
"""


def fault(kind: str, start_s: float, duration_s: float, sensor: str = SENSOR, **params: float) -> str:
    """One ``[[faults]]`` entry of the radar."""
    extra = "".join(f"{k} = {v}\n" for k, v in params.items())
    return (
        f'\n[[faults]]\ndevice = "{sensor}"\nkind = "{kind}"\n'
        f"start_s = {start_s}\nduration_s = {duration_s}\n{extra}"
    )


async def virtual_bus_open(*channels: str) -> None:
    """Return once a bus (the gateway driver's) is open on each python-can
    ``virtual`` channel: a frame sent on a virtual channel with no bus on it is
    lost, so an emulator must not start before."""
    from can.interfaces import virtual

    await eventually(
        lambda: all(virtual.channels.get(c) for c in channels), what=f"a bus on virtual channel(s) {channels}"
    )

"""The scenario file: sites, emulated sensors and truth targets, in TOML.

Validated once at load with pydantic (unknown keys are errors); a bad file
raises :class:`hilgw.errors.ConfigError` whose one-line message names the
dotted key (list items by their ``id``) and the reason, e.g.::

    demo.toml: sensors[radar-fwd].update_hz: Input should be greater than 0 (got 0)

Layout (every key is documented on its model below)::

    [scenario]   name, duration_s (0 = open-ended), seed
    [[sites]]    id, lat_deg, lon_deg, alt_m, yaw_deg, pitch_deg, roll_deg
    [[sensors]]  id, site, kind = "serial_radar" | "can_radar" (with can = {...}) | "asterix",
                 coverage, noise, clutter, clock ...
    [[targets]]  id, kind = "air" (waypoints, speed) | "ballistic" (launch, impact, ...)
    [[ships]]    id, waypoints, speed (platforms of "asterix" sensors and launchers)
    [[launchers]] id, site | ship, transport = "can" | "serial", coverage
    [[faults]]   device, kind, start_s, duration_s, parameters (sim_devices/faults.py)

A ``"can_radar"`` sensor (docs/icd/can-radar.md) is a land radar on a CAN
bus: it needs a ``can`` block (:class:`CanBusConfig`: interface, channel, fd,
bitrate, id_offset) that its emulator (sim_devices/can_radar_emulator.py)
joins; its sigmas are limited by the classic or the CAN FD DBC
(:data:`_WIRE_LIMITS`).

Extension point (not built yet, keep the name): a ``"ship"`` target kind
with a route joins the :data:`TargetConfig` union (and gets a truth evaluator
in :mod:`sim_devices.truth`).

Ballistic targets are solved here, at load time (see :mod:`sim_devices.kepler`
for the model), so an infeasible flight is a config error naming its key.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from hilgw.errors import ConfigError
from hilgw.geo import SensorGeometry, site_geometry
from hilgw.tomlconfig import StrictModel, one_line, parse_toml, read_toml
from sim_devices import kepler
from sim_devices.ballistic import solve_flight_time
from sim_devices.scenario_faults import FAULT_TARGETS, FaultConfig, FaultKind

__all__ = [
    "FAULT_TARGETS",
    "AirTarget",
    "BallisticTarget",
    "CanBusConfig",
    "FaultConfig",
    "FaultKind",
    "LauncherConfig",
    "Scenario",
    "ScenarioInfo",
    "SensorConfig",
    "ShipConfig",
    "SiteConfig",
    "TargetConfig",
    "Waypoint",
    "builtin_scenarios",
    "load_scenario",
    "parse_scenario",
    "resolve_scenario",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
BUILTIN_PREFIX = "builtin:"
_SCENARIO_DIR = "scenarios"


class _Model(StrictModel):
    """Unknown keys, non-finite and absurdly large numbers refused (hilgw.tomlconfig)."""


class ScenarioInfo(_Model):
    """``[scenario]``: the name, how long it runs, and the RNG seed."""

    name: str = Field(min_length=1)
    #: Length in seconds; 0 means open-ended (the emulator runs until stopped).
    duration_s: float = Field(default=0.0, ge=0)
    #: Seed of every random draw (noise, detection, clutter); each sensor
    #: derives its own stream from (seed, sensor id) so adding a sensor does not
    #: change the draws of the others.
    seed: int = Field(default=0, ge=0)


class SiteConfig(_Model):
    """``[[sites]]``: a geodetic position (WGS-84, height above the ellipsoid) and orientation.

    The orientation is the yaw-pitch-roll of :func:`hilgw.geo.site_geometry`.
    """

    id: str = Field(pattern=_ID)
    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)
    alt_m: float = Field(ge=-500, le=10000)
    yaw_deg: float = Field(default=0.0, ge=-360, le=360)
    pitch_deg: float = Field(default=0.0, ge=-90, le=90)
    roll_deg: float = Field(default=0.0, ge=-180, le=180)


class CanBusConfig(_Model):
    """A device's CAN bus (``can = { interface = ..., channel = ... }``), for the emulator.

    Any python-can interface by name. The gateway reads the same bus through
    its own ``[[devices]]`` transport; a cross-process bench needs an
    interface that crosses processes (``socketcan`` on a ``vcan``, or
    ``udp_multicast`` inside a network namespace: never on a real network).
    """

    interface: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    #: CAN FD (the launcher ICD's cue frames need it; a CAN radar may use either).
    fd: bool = False
    bitrate: int | None = Field(default=None, gt=0, le=8_000_000)
    #: Added to every arbitration id of the device's DBC (several devices on one bus).
    id_offset: int = Field(default=0, ge=0, le=0x7FF)


SensorKind = Literal["serial_radar", "asterix", "can_radar"]

#: Largest 1-σ each wire format can carry, per sensor kind: serial radar
#: sigmas are u16 with LSBs 0.01 m, 1 µrad, 1 mm/s, 1 µrad/s
#: (docs/icd/serial-radar.md §5.1), so a config beyond them cannot be sent.
#: A can_radar's depend on its bus: "can_radar" is classic CAN, "can_radar:fd"
#: CAN FD (picked by ``can.fd``).
_WIRE_LIMITS: dict[str, dict[str, float]] = {
    # CAT048 carries no accuracies, so no sigma is limited by the wire.
    "asterix": {},
    "serial_radar": {
        "sigma_range_m": 655.35,
        "sigma_angle_mrad": 65.535,
        "sigma_range_rate_mps": 65.535,
        "sigma_angle_rate_mradps": 65.535,
    },
    # Classic CAN, RADAR_TRK_ACC of drivers/can_radar/can_radar.dbc (docs/icd/can-radar.md
    # §4.1): u8 sigmas, SigmaRange 1 m LSB (255 m), SigmaAzimuth/SigmaElevation 1e-4 rad
    # (25.5 mrad), SigmaRangeRate 0.1 m/s (25.5 m/s), angle-rate sigmas 1e-4 rad/s.
    "can_radar": {
        "sigma_range_m": 255.0,
        "sigma_angle_mrad": 25.5,
        "sigma_range_rate_mps": 25.5,
        "sigma_angle_rate_mradps": 25.5,
    },
    # CAN FD, RADAR_TRK_FD of drivers/can_radar/can_radar_fd.dbc (§5.1): u16 sigmas with
    # the serial ICD's LSBs (0.01 m, 1e-6 rad, 0.001 m/s, 1e-6 rad/s).
    "can_radar:fd": {
        "sigma_range_m": 655.35,
        "sigma_angle_mrad": 65.535,
        "sigma_range_rate_mps": 65.535,
        "sigma_angle_rate_mradps": 65.535,
    },
}


class SensorConfig(_Model):
    """``[[sensors]]``: one emulated sensor front-end on a site.

    Coverage is a polar volume in the sensor's own frame (forward, right, up):
    ``range_min_m..range_max_m``, ``elevation_min_deg..elevation_max_deg`` and
    an azimuth sector ``azimuth_center_deg ± azimuth_width_deg/2`` (clockwise
    from the sensor's forward axis; 360 = all round), and the target must be
    above the radar horizon (4/3-Earth model).

    Kind ``"can_radar"`` needs ``can = { interface = ..., channel = ... }``
    (:class:`CanBusConfig`): the bus its emulator joins; ``can.fd`` picks the
    classic or the CAN FD frames of docs/icd/can-radar.md, ``can.id_offset``
    is added to every arbitration id. Other kinds take no ``can`` block.
    """

    id: str = Field(pattern=_ID)
    #: The site the sensor stands on; empty for a sensor mounted on a ship.
    site: str = ""
    kind: SensorKind = "serial_radar"
    #: Kind "asterix": the ship (``[[ships]]`` id) the radar is mounted on, its
    #: ASTERIX SAC/SIC (the SDPS of the ship uses SIC + 1), the 1-sigma of the
    #: reported 3-D height and track velocity, the NMEA own-ship rate, and what
    #: CAT048 THETA is measured from (see docs/icd/frigate-feed.md).
    ship: str | None = None
    sac: int = Field(default=0, ge=0, le=255)
    sic: int = Field(default=1, ge=0, le=254)
    sigma_height_m: float = Field(default=100.0, gt=0)
    sigma_speed_mps: float = Field(default=3.0, gt=0)
    nmea_hz: float = Field(default=5.0, gt=0, le=50)
    azimuth_reference: Literal["north", "bow", "deck"] = "north"
    #: The sensor id the device writes in every frame header (u16); default:
    #: 1 + the sensor's position in the file.
    wire_id: int | None = Field(default=None, ge=0, le=65535)
    #: Kind "can_radar" (required there, rejected elsewhere): its CAN bus.
    can: CanBusConfig | None = None
    update_hz: float = Field(gt=0, le=100)
    range_min_m: float = Field(default=0.0, ge=0)
    range_max_m: float = Field(gt=0, le=5_000_000)
    elevation_min_deg: float = Field(default=0.0, ge=-90, le=90)
    elevation_max_deg: float = Field(default=90.0, ge=-90, le=90)
    azimuth_center_deg: float = Field(default=0.0, ge=-360, le=360)
    azimuth_width_deg: float = Field(default=360.0, gt=0, le=360)
    #: 1-σ measurement noise; also the sigmas the sensor reports.
    sigma_range_m: float = Field(gt=0)
    sigma_angle_mrad: float = Field(gt=0)
    sigma_range_rate_mps: float = Field(gt=0)
    sigma_angle_rate_mradps: float = Field(default=1.0, gt=0)
    #: Whether the sensor measures and reports angle rates.
    rates_valid: bool = True
    detection_probability: float = Field(default=0.95, ge=0, le=1)
    #: Mean number of new false (clutter) tracks per scan (Poisson); each lives
    #: 1..clutter_lifetime_scans scans.
    clutter_rate: float = Field(default=0.0, ge=0, le=100)
    clutter_lifetime_scans: int = Field(default=3, ge=1, le=100)
    #: A target missed for more than this many scans loses its track id; the
    #: next detection starts a new track, as a real radar tracker would.
    track_drop_scans: int = Field(default=3, ge=0, le=1000)
    #: Delay from measurement to the report leaving the sensor.
    latency_s: float = Field(default=0.05, ge=0, le=10)
    #: Sensor clock error: reported time = true UTC + offset + drift·(t - epoch).
    clock_offset_s: float = Field(default=0.0, ge=-3600, le=3600)
    clock_drift_ppm: float = Field(default=0.0, ge=-1000, le=1000)

    @model_validator(mode="after")
    def _limits(self) -> SensorConfig:
        if self.range_min_m >= self.range_max_m:
            raise ValueError("range_min_m must be below range_max_m")
        if self.elevation_min_deg >= self.elevation_max_deg:
            raise ValueError("elevation_min_deg must be below elevation_max_deg")
        if (self.kind == "asterix") != (self.ship is not None) or (self.kind != "asterix" and not self.site):
            raise ValueError("an asterix sensor needs ship (and no site); other kinds need site")
        wire: str = self.kind
        if self.kind == "can_radar":
            if self.can is None:
                raise ValueError(
                    "a can_radar sensor needs can = { interface = ..., channel = ... } (the bus it is on)"
                )
            from drivers.can_radar.icd import LAYOUTS  # loads the DBC files: only for a can_radar

            top = max(LAYOUTS)  # the radar's highest id (docs/icd/can-radar.md §3) must stay 11-bit
            if top + self.can.id_offset > 0x7FF:
                raise ValueError(
                    f"can.id_offset = {self.can.id_offset} puts the radar's id 0x{top:X} past 0x7FF "
                    f"(at most {0x7FF - top} = 0x{0x7FF - top:X})"
                )
            if self.can.fd:
                wire = "can_radar:fd"
        elif self.can is not None:
            raise ValueError(f"can = {{...}} is only for kind = 'can_radar', not {self.kind!r}")
        bus = {"can_radar": " on classic CAN", "can_radar:fd": " on CAN FD"}.get(wire, "")
        for key, hi in _WIRE_LIMITS[wire].items():
            if getattr(self, key) > hi:
                raise ValueError(
                    f"{key} = {getattr(self, key)} exceeds what {self.kind}{bus} can carry ({hi})"
                )
        return self


class SeaWaypoint(_Model):
    """A point of a ship's route (on the WGS-84 ellipsoid)."""

    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)


class ShipConfig(_Model):
    """``[[ships]]``: a ship sailing straight legs between waypoints at constant speed.

    The route is evaluated like an air target's (great-circle legs) at height
    0; the radar sits ``antenna_height_m`` above it. Pitch and roll are
    sinusoidal sea motion (amplitude, period); heading follows the course.
    Before ``start_time_s`` the ship lies at its first waypoint; after the
    last waypoint it lies there.
    """

    id: str = Field(pattern=_ID)
    waypoints: list[SeaWaypoint] = Field(min_length=2, max_length=1000)
    speed_mps: float = Field(gt=0, le=40)
    start_time_s: float = Field(default=0.0, ge=0)
    antenna_height_m: float = Field(default=30.0, ge=0, le=200)
    roll_amplitude_deg: float = Field(default=0.0, ge=0, le=30)
    roll_period_s: float = Field(default=8.0, gt=0)
    pitch_amplitude_deg: float = Field(default=0.0, ge=0, le=15)
    pitch_period_s: float = Field(default=6.0, gt=0)


class Waypoint(_Model):
    """A point of an air target's route (WGS-84, height above the ellipsoid)."""

    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)
    alt_m: float = Field(ge=-500, le=30000)


class AirTarget(_Model):
    """An air-breathing target: straight legs between waypoints at constant speed.

    Active from ``start_time_s`` at the first waypoint until it reaches the
    last one. Legs follow the great circle between the waypoints' geocentric
    directions with the geocentric radius changing linearly
    (:mod:`sim_devices.truth`).
    """

    kind: Literal["air"]
    id: str = Field(pattern=_ID)
    waypoints: list[Waypoint] = Field(min_length=2, max_length=1000)
    speed_mps: float = Field(gt=0, le=2000)
    start_time_s: float = Field(default=0.0, ge=0)


class BallisticTarget(_Model):
    """A generic ballistic target: Keplerian free flight from launch to impact.

    Give exactly one of ``flight_time_s`` or ``apogee_m`` (the height above the
    WGS-84 ellipsoid at the orbit's apoapsis). The free-flight model is in
    :mod:`sim_devices.kepler`; it is a test-bench trajectory, not the
    performance of any real missile.
    """

    kind: Literal["ballistic"]
    id: str = Field(pattern=_ID)
    launch_lat_deg: float = Field(ge=-90, le=90)
    launch_lon_deg: float = Field(ge=-180, le=180)
    launch_alt_m: float = Field(default=0.0, ge=-500, le=10000)
    impact_lat_deg: float = Field(ge=-90, le=90)
    impact_lon_deg: float = Field(ge=-180, le=180)
    impact_alt_m: float = Field(default=0.0, ge=-500, le=10000)
    launch_time_s: float = Field(default=0.0, ge=0)
    flight_time_s: float | None = Field(default=None, gt=0, le=7200)
    apogee_m: float | None = Field(default=None, gt=0, le=2_000_000)

    _orbit: kepler.Ellipse | None = PrivateAttr(default=None)
    _flight_time_s: float = PrivateAttr(default=0.0)

    @model_validator(mode="after")
    def _one_of(self) -> BallisticTarget:
        if (self.flight_time_s is None) == (self.apogee_m is None):
            raise ValueError("give exactly one of flight_time_s or apogee_m")
        return self

    @property
    def orbit(self) -> kepler.Ellipse:
        """The solved ellipse (ECI, see :mod:`sim_devices.kepler`)."""
        if self._orbit is None:  # only a Scenario built by parse_scenario is solved
            raise RuntimeError(f"ballistic target {self.id!r} was not solved; use parse_scenario()")
        return self._orbit

    @property
    def impact_time_s(self) -> float:
        """Scenario time of impact (launch time + the solved flight time)."""
        self.orbit  # noqa: B018  (raises if unsolved)
        return self.launch_time_s + self._flight_time_s


class LauncherConfig(_Model):
    """``[[launchers]]``: a launcher interface on a land site or a ship.

    ``transport`` is how its interface is wired (docs/icd/launcher.md: CAN or
    serial), ``can``/``keys``/``heartbeat_hz`` what its emulator
    (sim_devices/launcher_emulator.py) runs with; the coverage volume is where
    it can be cued (a polar volume like a sensor's, about the site,
    north-referenced). Bench data for the cue path, not a model of any
    weapon's performance.
    """

    id: str = Field(pattern=_ID)
    #: The site it stands on, or the ship (``[[ships]]`` id) that carries it; exactly one.
    site: str | None = None
    ship: str | None = None
    transport: Literal["can", "serial"] = "can"
    #: Transport "can": the bus its emulator joins; without it ``hilgw emulate``
    #: does not start this launcher (there is no bus every gateway can share).
    can: CanBusConfig | None = None
    #: Its id on the wire (docs/icd/launcher.md §5); default 1 + its position in the file.
    launcher_id: int | None = Field(default=None, ge=0, le=65535)
    #: Wire keys the emulated launcher accepts, by key id: ``"hex:<hex>"``,
    #: ``"env:<VAR>"`` or ``"file:<path>"`` as the gateway's ``cue_keys``. A
    #: scenario file should name an env var or a file, never a real key.
    keys: dict[int, str] = Field(default_factory=dict)
    #: Heartbeats per second of its emulator.
    heartbeat_hz: float = Field(default=2.0, gt=0, le=100)
    range_min_m: float = Field(default=0.0, ge=0)
    range_max_m: float = Field(gt=0, le=5_000_000)
    elevation_min_deg: float = Field(default=0.0, ge=-90, le=90)
    elevation_max_deg: float = Field(default=90.0, ge=-90, le=90)
    azimuth_center_deg: float = Field(default=0.0, ge=-360, le=360)
    azimuth_width_deg: float = Field(default=360.0, gt=0, le=360)

    @model_validator(mode="after")
    def _limits(self) -> LauncherConfig:
        if (self.site is None) == (self.ship is None):
            raise ValueError("give exactly one of site or ship")
        if self.range_min_m >= self.range_max_m:
            raise ValueError("range_min_m must be below range_max_m")
        if self.elevation_min_deg >= self.elevation_max_deg:
            raise ValueError("elevation_min_deg must be below elevation_max_deg")
        if self.can is not None and self.transport != "can":
            raise ValueError("can = {...} is for transport = 'can'")
        return self


#: Target kinds, told apart by ``kind``. Extension point: a ShipTarget
#: (``kind = "ship"``, a route of waypoints on the sea surface) joins here.
TargetConfig = Annotated[AirTarget | BallisticTarget, Field(discriminator="kind")]
_TARGET_TAGS = {"air", "ballistic"}


class _HasId(Protocol):
    id: str


_T = TypeVar("_T", bound=_HasId)


def _by_id(items: list[_T], ident: str) -> _T:
    """The item of ``items`` whose ``id`` is ``ident`` (KeyError if none)."""
    for it in items:
        if it.id == ident:
            return it
    raise KeyError(ident)


class Scenario(_Model):
    """A whole scenario file. Build it with :func:`parse_scenario` / :func:`load_scenario`.

    ``launchers`` and ``faults`` (the timeline of injected device faults) are
    validated against the sensors, sites and ships in :func:`_check_references`.
    """

    scenario: ScenarioInfo
    sites: list[SiteConfig] = Field(min_length=1)
    sensors: list[SensorConfig] = Field(default_factory=list)
    targets: list[TargetConfig] = Field(default_factory=list)
    #: Ships carrying "asterix" sensors (sim_devices/frigate_emulator.py).
    ships: list[ShipConfig] = Field(default_factory=list)
    #: Launcher interfaces (their emulators and the cue path's bench data; see LauncherConfig).
    launchers: list[LauncherConfig] = Field(default_factory=list)
    #: The fault timeline (sim_devices/faults.py applies it in the emulators).
    faults: list[FaultConfig] = Field(default_factory=list, max_length=10_000)

    #: Things derived from the validated scenario once and reused (the compiled
    #: truth of :mod:`sim_devices.truth`); not part of the file.
    _derived: dict[str, object] = PrivateAttr(default_factory=dict)

    def site(self, site_id: str) -> SiteConfig:
        """The site called ``site_id`` (KeyError if none)."""
        return _by_id(self.sites, site_id)

    def ship(self, ship_id: str) -> ShipConfig:
        """The ship called ``ship_id`` (KeyError if none)."""
        return _by_id(self.ships, ship_id)

    def sensor(self, sensor_id: str) -> SensorConfig:
        """The sensor called ``sensor_id`` (KeyError if none)."""
        return _by_id(self.sensors, sensor_id)

    def launcher(self, launcher_id: str) -> LauncherConfig:
        """The launcher called ``launcher_id`` (KeyError if none)."""
        return _by_id(self.launchers, launcher_id)

    def faults_of(self, device_id: str) -> list[FaultConfig]:
        """The faults of one device, in file order."""
        return [f for f in self.faults if f.device == device_id]

    def device_kind(self, device_id: str) -> str | None:
        """A sensor's kind, ``"launcher:<transport>"`` for a launcher, None if no such device."""
        for s in self.sensors:
            if s.id == device_id:
                return s.kind
        for lc in self.launchers:
            if lc.id == device_id:
                return f"launcher:{lc.transport}"
        return None

    def wire_id(self, sensor_id: str) -> int:
        """The sensor id ``sensor_id`` writes on the wire (``wire_id`` or 1 + its index)."""
        for i, s in enumerate(self.sensors):
            if s.id == sensor_id:
                return s.wire_id if s.wire_id is not None else i + 1
        raise KeyError(sensor_id)

    def launcher_wire_id(self, launcher: str) -> int:
        """The launcher id ``launcher`` answers to on the wire (``launcher_id`` or 1 + its index)."""
        for i, lc in enumerate(self.launchers):
            if lc.id == launcher:
                return lc.launcher_id if lc.launcher_id is not None else i + 1
        raise KeyError(launcher)

    def geometry(self, sensor_id: str) -> SensorGeometry:
        """The sensor's site geometry (origin, ECEF -> forward/right/up)."""
        st = self.site(self.sensor(sensor_id).site)
        return site_geometry(
            sensor_id, st.lat_deg, st.lon_deg, st.alt_m, st.yaw_deg, st.pitch_deg, st.roll_deg
        )


# --- loading ---------------------------------------------------------------------


def _check_references(scn: Scenario) -> list[tuple[str, str]]:
    """Cross-field rules pydantic cannot see: unique ids, sites that exist."""
    errors: list[tuple[str, str]] = []
    sections: tuple[tuple[str, list[Any]], ...] = (
        ("sites", scn.sites), ("sensors", scn.sensors), ("targets", scn.targets),
        ("ships", scn.ships), ("launchers", scn.launchers),
    )  # fmt: skip
    for section, items in sections:
        seen: set[str] = set()
        for it in items:
            if it.id in seen:
                errors.append((f"{section}[{it.id}].id", f"id {it.id!r} appears twice"))
            seen.add(it.id)
    sites = {s.id for s in scn.sites}
    for s in scn.sensors:
        if s.ship is not None:
            if s.ship not in {sh.id for sh in scn.ships}:
                errors.append((f"sensors[{s.id}].ship", f"no ship {s.ship!r}"))
        elif s.site not in sites:
            errors.append(
                (f"sensors[{s.id}].site", f"no site {s.site!r} (sites: {', '.join(sorted(sites))})")
            )
    for t in scn.targets:
        if isinstance(t, AirTarget):
            for i, (w0, w1) in enumerate(zip(t.waypoints, t.waypoints[1:], strict=False)):
                if w0 == w1:
                    errors.append((f"targets[{t.id}].waypoints[{i + 1}]", "repeats the previous waypoint"))
    ships = {sh.id for sh in scn.ships}
    sensor_ids = {s.id for s in scn.sensors}
    for lc in scn.launchers:
        if lc.id in sensor_ids:
            errors.append((f"launchers[{lc.id}].id", f"id {lc.id!r} is already a sensor's"))
        if lc.site is not None and lc.site not in sites:
            errors.append((f"launchers[{lc.id}].site", f"no site {lc.site!r}"))
        if lc.ship is not None and lc.ship not in ships:
            errors.append((f"launchers[{lc.id}].ship", f"no ship {lc.ship!r}"))
    for i, f in enumerate(scn.faults):
        kind = scn.device_kind(f.device)
        if kind is None:
            errors.append((f"faults[{i}].device", f"no sensor or launcher {f.device!r}"))
        elif kind not in FAULT_TARGETS[f.kind]:
            errors.append((f"faults[{i}].kind", f"a {f.kind} fault does not apply to {f.device!r} ({kind})"))
    wire: dict[int, str] = {}
    for s in scn.sensors:
        w = scn.wire_id(s.id)
        if w in wire:
            errors.append((f"sensors[{s.id}].wire_id", f"wire id {w} is already used by {wire[w]!r}"))
        wire[w] = s.id
    return errors


def parse_scenario(raw: dict[str, Any], source: str = "scenario") -> Scenario:
    """Validate a parsed TOML document and solve its trajectories.

    Raises :class:`ConfigError` (one line: ``source: dotted.key: reason``).
    """
    try:
        scn = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise one_line(exc, raw, source, _TARGET_TAGS) from None
    problems = _check_references(scn)
    if problems:
        key, msg = problems[0]
        raise ConfigError(f"{source}: {key}", msg)
    for t in scn.targets:
        if isinstance(t, BallisticTarget):
            which = "flight_time_s" if t.flight_time_s is not None else "apogee_m"
            try:
                t._orbit, t._flight_time_s = solve_flight_time(t)
            except ValueError as exc:
                raise ConfigError(f"{source}: targets[{t.id}].{which}", str(exc)) from None
    return scn


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario TOML file."""
    return parse_scenario(read_toml(path), source=Path(path).name)


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in the package (``sim_devices/scenarios/*.toml``)."""
    root = resources.files("sim_devices").joinpath(_SCENARIO_DIR)
    return sorted(e.name.removesuffix(".toml") for e in root.iterdir() if e.name.endswith(".toml"))


def resolve_scenario(spec: str | Path) -> Scenario:
    """Load ``builtin:NAME`` from the package, or a file path."""
    s = str(spec)
    if s.startswith(BUILTIN_PREFIX):
        name = s.removeprefix(BUILTIN_PREFIX)
        res = resources.files("sim_devices").joinpath(_SCENARIO_DIR, f"{name}.toml")
        if not res.is_file():
            raise ConfigError(s, f"no built-in scenario {name!r} (have: {', '.join(builtin_scenarios())})")
        raw = parse_toml(res.read_bytes(), s)  # a packaging bug if it fails, but say where
        return parse_scenario(raw, source=f"{name}.toml")
    return load_scenario(s)

"""What the frigate emulator sees and says, without I/O: the ship's motion and the radar's scans.

:class:`ShipMotion` sails a scenario ship (``[[ships]]``) and :class:`FrigateModel`
turns truth into the events of one scan (CAT048 plots, CAT062 system tracks,
clutter) and NMEA own-ship fixes, with the item limits of docs/icd/asterix.md.
The process around it (sockets, timing, faults, the ready line) is
:mod:`sim_devices.frigate_emulator`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import pymap3d

from drivers.asterix import (
    ServiceMessage034,
    SystemTrack062,
    TargetReport048,
)
from drivers.asterix.events import AsterixRecordEvent
from drivers.nmea import OwnShipFix
from hilgw.errors import ConfigError
from hilgw.geo import MEAN_EARTH_RADIUS_M, ecef_to_polar, wrap_2pi
from hilgw.ship import ShipStates, enu_bases, radar_frames
from sim_devices.scenario import (
    AirTarget,
    Scenario,
    ScenarioInfo,
    SensorConfig,
    ShipConfig,
    SiteConfig,
    Waypoint,
)
from sim_devices.truth import compile_truth, truth_at

__all__ = ["FrigateModel", "ShipMotion", "TruthFn"]

DEG = math.pi / 180.0
_KR2 = 2.0 * (4.0 / 3.0) * MEAN_EARTH_RADIUS_M  # 2kR of the 4/3-Earth radar horizon (Skolnik §8.2)
#: Item limits (docs/icd/asterix.md, "What the emulator sends"): the standard's
#: range where it gives one (CAT062 ed. 1.21 I062/130: -1,500..150,000 ft), else
#: the field width: I048/040 RHO u16 of 1/256 NM, I048/110 s14 of 25 ft, I048/200
#: GSP u16 of 2^-14 NM/s, I062/185 s16 of 0.25 m/s, I062/340 HEIGHT s16 of 25 ft.
MAX_RHO_M = 65535 / 256 * 1852.0
MAX_3DH_M = 8191 * 25 * 0.3048
GEO_ALT_RANGE_M = (-1500 * 0.3048, 150_000 * 0.3048)
MAX_HEIGHT_340_M = 32767 * 25 * 0.3048
MAX_GSP_MPS = 65535 / 2**14 * 1852.0
MAX_V062_MPS = 8191.75


class ShipMotion:
    """A ship's route as a function of scenario time (great-circle legs at height 0)."""

    def __init__(self, ship: ShipConfig) -> None:
        self.cfg = ship
        wps = [Waypoint(lat_deg=w.lat_deg, lon_deg=w.lon_deg, alt_m=0.0) for w in ship.waypoints]
        route = AirTarget(
            kind="air", id=ship.id, waypoints=wps, speed_mps=ship.speed_mps, start_time_s=ship.start_time_s
        )
        w0 = ship.waypoints[0]
        scn = Scenario(
            scenario=ScenarioInfo(name=ship.id),
            sites=[SiteConfig(id="route", lat_deg=w0.lat_deg, lon_deg=w0.lon_deg, alt_m=0.0)],
            targets=[route],
        )
        self.truth = compile_truth(scn)
        assert self.truth.air is not None  # one air-like route was compiled
        self.t0 = float(self.truth.air.t_start[0])
        self.t1 = float(self.truth.air.t_end[0])

    def at(self, t_s: float) -> ShipStates:
        """The radar antenna's state at ``t_s`` (one row; attitude from course and sea motion)."""
        c = self.cfg
        moving = self.t0 <= t_s <= self.t1
        tt = min(max(t_s, self.t0), self.t1)
        _, x, _ = self.truth.at(tt)
        p = x[0, :3]
        v = x[0, 3:] if moving else np.zeros(3)
        lat, lon, _ = pymap3d.ecef2geodetic(p[0], p[1], p[2], deg=False)
        enu = enu_bases(np.array([lat]), np.array([lon]))[0]
        ve, vn = float(enu[0] @ x[0, 3:]), float(enu[1] @ x[0, 3:])  # course even when lying still
        att = np.array(
            [
                math.atan2(ve, vn) % (2 * math.pi),
                c.pitch_amplitude_deg * DEG * math.sin(2 * math.pi * t_s / c.pitch_period_s),
                c.roll_amplitude_deg * DEG * math.sin(2 * math.pi * t_s / c.roll_period_s),
            ]
        )
        # The antenna sits antenna_height_m up the mast: the ship's up axis (deck frame).
        level = ShipStates(
            p[None, :],
            np.array([lat]),
            np.array([lon]),
            np.zeros(1),
            v[None, :],
            att[None, :],
            np.zeros((1, 3, 3)),
            np.zeros((1, 3)),
            np.ones(1, bool),
        )
        pos = p + radar_frames(level, "deck")[0, 2] * c.antenna_height_m
        return ShipStates(
            pos=pos[None, :],
            lat=np.array([lat]),
            lon=np.array([lon]),
            h=np.array([c.antenna_height_m]),
            vel=v[None, :],
            att=att[None, :],
            pos_cov=np.zeros((1, 3, 3)),
            att_var=np.zeros((1, 3)),
            valid=np.ones(1, bool),
        )


TruthFn = Callable[[float], tuple[tuple[str, ...], np.ndarray, np.ndarray]]


class FrigateModel:
    """The radar and SDPS of one ``asterix`` sensor, scan by scan (stateful: track numbers, clutter)."""

    def __init__(
        self, scenario: Scenario, sensor_id: str, epoch_ns: int, truth: TruthFn | None = None
    ) -> None:
        self.sensor: SensorConfig = scenario.sensor(sensor_id)
        if self.sensor.kind != "asterix" or self.sensor.ship is None:
            raise ConfigError(f"sensors[{sensor_id}]", "not an asterix sensor on a ship")
        self.ship = ShipMotion(scenario.ship(self.sensor.ship))
        self.epoch_ns = int(epoch_ns)
        self.truth: TruthFn = truth if truth is not None else (lambda t: truth_at(scenario, t))
        self.rng = np.random.default_rng((scenario.scenario.seed, zlib.crc32(sensor_id.encode())))
        self.track_no: dict[int, int] = {}
        self.last_seen: dict[int, int] = {}
        self.next_no = 1
        self.scan_no = 0
        self.clutter: list[tuple[int, float, float, float, int]] = []  # number, rho, theta, height, last scan

    def _number(self) -> int:
        n = self.next_no
        self.next_no = n % 4095 + 1  # I048/161 is 12 bits; 0 is not used
        return n

    def scan(self, t_s: float) -> tuple[list[AsterixRecordEvent], list[int]]:
        """One scan: the CAT034/048/062 events and, per CAT048 event, its truth row (-1 clutter)."""
        c = self.sensor
        rng = self.rng
        scan_no = self.scan_no
        self.scan_no += 1
        t_ns = self.epoch_ns + round(t_s * 1e9)
        ship = self.ship.at(t_s)
        tl = radar_frames(ship, c.azimuth_reference)
        _, x, active = self.truth(t_s)
        rows = np.flatnonzero(active)
        events: list[AsterixRecordEvent] = [ServiceMessage034(c.sac, c.sic, 1, t_ns, 0.0)]
        truth_rows: list[int] = []
        if rows.size:
            xa = x[rows]
            pol = ecef_to_polar(ship.pos[0], tl[0], xa)
            geod = pymap3d.ecef2geodetic(xa[:, 0], xa[:, 1], xa[:, 2], deg=False)
            # pymap3d returns scalars for one-element input: keep arrays.
            lat, lon, h = (np.atleast_1d(np.asarray(v, np.float64)) for v in geod)
            ok = (pol[:, 0] >= c.range_min_m) & (pol[:, 0] <= min(c.range_max_m, MAX_RHO_M * 0.99))
            el_level = ecef_to_polar(ship.pos[0], radar_frames(ship, "north")[0], xa)[:, 2]
            ok &= (el_level >= c.elevation_min_deg * DEG) & (el_level <= c.elevation_max_deg * DEG)
            if c.azimuth_width_deg < 360.0:
                off = np.abs((pol[:, 1] - c.azimuth_center_deg * DEG + math.pi) % (2 * math.pi) - math.pi)
                ok &= off <= c.azimuth_width_deg * DEG / 2
            horizon = np.sqrt(_KR2 * ship.h[0]) + np.sqrt(_KR2 * np.maximum(h, 0.0))
            ok &= (el_level >= 0.0) | (pol[:, 0] <= horizon)
            detected = ok & (rng.random(rows.size) < c.detection_probability)
            for i in np.flatnonzero(detected):
                r = int(rows[i])
                if r not in self.track_no or scan_no - self.last_seen[r] - 1 > c.track_drop_scans:
                    self.track_no[r] = self._number()
                self.last_seen[r] = scan_no
                events += self._target(
                    r, t_ns, pol[i], float(lat[i]), float(lon[i]), float(h[i]), xa[i], ship
                )
                truth_rows.append(r)
        for number, rho, theta, height in self._clutter(scan_no):
            events.append(TargetReport048(c.sac, c.sic, t_ns, rho, theta, height, number, None, None))
            truth_rows.append(-1)
        return events, truth_rows

    def _target(
        self,
        r: int,
        t_ns: int,
        pol: np.ndarray,
        lat: float,
        lon: float,
        h: float,
        x: np.ndarray,
        ship: ShipStates,
    ) -> list[AsterixRecordEvent]:
        c, rng = self.sensor, self.rng
        enu = enu_bases(np.array([lat]), np.array([lon]))[0]
        ve, vn = float(enu[0] @ x[3:]), float(enu[1] @ x[3:])
        gs = math.hypot(ve, vn)
        n = rng.standard_normal(8)
        rho = max(float(pol[0] + n[0] * c.sigma_range_m), 1.0)
        theta = float(wrap_2pi(pol[1] + n[1] * c.sigma_angle_mrad * 1e-3))
        height = h + n[2] * c.sigma_height_m if abs(h) < MAX_3DH_M * 0.99 else None
        gs_m = abs(gs + n[3] * c.sigma_speed_mps)
        hdg_m = math.atan2(ve, vn) + n[4] * c.sigma_speed_mps / max(gs, c.sigma_speed_mps)
        tn = self.track_no[r]
        # I048/200 omitted (not wrapped, not the whole record skipped) beyond GSP's 4 NM/s.
        speed = (gs_m, hdg_m % (2 * math.pi)) if gs_m < MAX_GSP_MPS * 0.99 else (None, None)
        plot = TargetReport048(c.sac, c.sic, t_ns, rho, theta, height, tn, *speed)
        # The SDPS track: truth + noise with the accuracies it reports (I062/500).
        s_xy = max(c.sigma_range_m, pol[0] * c.sigma_angle_mrad * 1e-3) * 0.5
        dlat = n[5] * s_xy / 6_371_000.0
        dlon = n[6] * s_xy / (6_371_000.0 * max(math.cos(lat), 1e-6))
        geo = h + n[7] * 30.0  # within the 50 m the gateway assumes for I062/130 (no I062/500 AGA read)
        # Above I062/130's 150,000 ft (a ballistic target) the altitude goes in
        # I062/340 HEIGHT instead, and I062/080 SRC says "no source" for I062/130.
        in_130 = GEO_ALT_RANGE_M[0] <= geo <= GEO_ALT_RANGE_M[1]
        vx = ve + rng.standard_normal() * c.sigma_speed_mps
        vy = vn + rng.standard_normal() * c.sigma_speed_mps
        has_v = max(abs(vx), abs(vy)) < MAX_V062_MPS
        track = SystemTrack062(
            sac=c.sac,
            sic=c.sic + 1,
            track_number=tn,
            t_ns=t_ns,
            lat_rad=lat + dlat,
            lon_rad=lon + dlon,
            vx_mps=vx if has_v else None,
            vy_mps=vy if has_v else None,
            geo_alt_m=geo if in_130 else None,
            altitude_source=2 if in_130 else 0,  # I062/080 SRC 2: 3-D radar
            monosensor=True,  # I062/080 MON: the frigate's one radar makes every track
            measured_height_m=geo if not in_130 and abs(geo) < MAX_HEIGHT_340_M else None,
            sigma_x_m=min(s_xy, 32000.0),
            sigma_y_m=min(s_xy, 32000.0),
            sigma_vx_mps=min(c.sigma_speed_mps, 63.0),
            sigma_vy_mps=min(c.sigma_speed_mps, 63.0),
        )
        return [plot, track]

    def _clutter(self, scan_no: int) -> list[tuple[int, float, float, float]]:
        c, rng = self.sensor, self.rng
        self.clutter = [cl for cl in self.clutter if cl[4] >= scan_no]
        for _ in range(int(rng.poisson(c.clutter_rate)) if c.clutter_rate > 0 else 0):
            life = int(rng.integers(1, c.clutter_lifetime_scans + 1))
            rho = float(rng.uniform(c.range_min_m, min(c.range_max_m, MAX_RHO_M * 0.99)))
            theta = float(rng.uniform(0.0, 2 * math.pi))
            self.clutter.append(
                (self._number(), rho, theta, float(rng.uniform(0.0, 3000.0)), scan_no + life - 1)
            )
        return [(n, r, t, h) for n, r, t, h, _ in self.clutter]

    def nmea(self, t_s: float) -> list[OwnShipFix]:
        """The own-ship sentences at ``t_s`` (navigation reference at the waterline)."""
        s = self.ship.at(t_s)
        t_ns = self.epoch_ns + round(t_s * 1e9)
        enu = enu_bases(s.lat, s.lon)[0]
        ve, vn = float(enu[0] @ s.vel[0]), float(enu[1] @ s.vel[0])
        lat, lon = float(s.lat[0]), float(s.lon[0])
        hdg, pitch, roll = (float(a) for a in s.att[0])
        return [
            OwnShipFix(
                "GGA",
                "GP",
                t_ns,
                t_ns,
                lat_rad=lat,
                lon_rad=lon,
                alt_msl_m=0.0,
                geoid_sep_m=0.0,
                fix_quality=1,
                num_sats=12,
                hdop=0.8,
            ),
            OwnShipFix(
                "VTG",
                "GP",
                t_ns,
                t_ns,
                course_rad=math.atan2(ve, vn) % (2 * math.pi),
                speed_mps=math.hypot(ve, vn),
            ),
            OwnShipFix("HDT", "HE", t_ns, t_ns, heading_rad=hdg),
            OwnShipFix(
                "PASHR", "P", t_ns, t_ns, heading_rad=hdg, roll_rad=roll, pitch_rad=pitch, heave_m=0.0
            ),
        ]

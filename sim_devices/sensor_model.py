"""What an emulated radar reports in one scan: coverage, detection, noise, local tracks, clutter.

One :class:`SensorModel` per emulated sensor. Each call to :meth:`SensorModel.scan`
is one scan at a scenario time and returns the reports as a
:data:`drivers.radar.TRACK_BATCH_DTYPE` array, the exact input of
the codec's batch encoder, so the emulator hands it over untouched.

Per scan, vectorised over targets:

1. truth from :func:`sim_devices.truth.truth_at`, polar via
   :func:`hilgw.geo.ecef_to_polar` (the same measurement function the
   gateway inverts, so there is one convention);
2. coverage: range, elevation and azimuth sector in the sensor frame, and the
   radar horizon of a 4/3 effective Earth radius (Skolnik, *Introduction to
   Radar Systems*, §8.2: d = √(2kRh_s) + √(2kRh_t), k = 4/3);
3. detection: a Bernoulli draw with the configured probability;
4. measurement: truth + zero-mean Gaussian noise with the configured sigmas
   (which are also the reported sigmas). Angle rates are the central
   difference of ``ecef_to_polar`` over ±h of straight-line motion (exact to
   O(h²)), plus noise; they and their sigmas are 0 when ``rates_valid`` is off,
   as the ICD requires (docs/icd/serial-radar.md §5.1);
5. local track ids: a target keeps its id while it is missed for at most
   ``track_drop_scans`` scans; after that its next detection starts a new id,
   as a real radar's tracker would drop and re-initiate the track;
6. clutter: Poisson(``clutter_rate``) new false tracks per scan, uniform in the
   coverage volume, each living 1..``clutter_lifetime_scans`` scans with a
   random radial drift;
7. the reported sensor time carries the sensor clock error:
   t_sensor = epoch + t + offset + drift_ppm·10⁻⁶·t.

All randomness comes from one ``numpy.random.Generator`` seeded from
(scenario seed, sensor id): the same scenario and seed give the same reports.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pymap3d

from drivers.radar import TRACK_BATCH_DTYPE
from hilgw.geo import MEAN_EARTH_RADIUS_M, angle_diff, ecef_to_polar, enu_basis, wrap_2pi
from sim_devices.scenario import Scenario, SensorConfig
from sim_devices.truth import truth_of

__all__ = ["RADAR_HORIZON_K", "Scan", "SensorModel", "scan_times"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Effective Earth radius factor of standard refraction (the "4/3 Earth").
RADAR_HORIZON_K = 4.0 / 3.0
_RATE_STEP_S = 0.01  # h of the central difference for angle rates
_MAX_ID = 0xFFFFFFFF  # sensor_track_id is u32; 0 is reserved for plots
#: Elevation above which clutter is not drawn: false tracks sit low.
_CLUTTER_MAX_EL_RAD = np.radians(10.0)
_CLUTTER_DRIFT_SIGMA_MPS = 15.0


@dataclass(frozen=True, slots=True)
class Scan:
    """One scan's output.

    ``reports`` is a TRACK_BATCH_DTYPE array (rows sorted by sensor track id);
    ``target_index`` (same length) is the row of the truth target each report
    is about, -1 for clutter (emulator-side knowledge, never on the wire).
    ``in_coverage`` marks, per truth target, which were detectable this scan.
    """

    t_s: float
    reports: npt.NDArray[np.void]
    target_index: I64
    in_coverage: npt.NDArray[np.bool_]


def scan_times(update_hz: float, t0_s: float, t1_s: float) -> F64:
    """Scan times k / update_hz with t0 ≤ t < t1 (the scan grid is anchored at t = 0)."""
    k0 = int(np.ceil(t0_s * update_hz - 1e-9))
    k1 = int(np.ceil(t1_s * update_hz - 1e-9))
    return np.arange(k0, max(k0, k1), dtype=np.float64) / update_hz


class SensorModel:
    """The emulated sensor ``sensor_id`` of ``scenario``, scan by scan (stateful: track ids, clutter).

    ``epoch_ns`` is the UTC time of scenario t = 0; it only shifts the
    reported ``sensor_time_ns``.
    """

    def __init__(self, scenario: Scenario, sensor_id: str, epoch_ns: int = 0) -> None:
        self.config: SensorConfig = scenario.sensor(sensor_id)
        self.sensor_id = sensor_id
        self.wire_id = scenario.wire_id(sensor_id)
        self.epoch_ns = int(epoch_ns)
        geo = scenario.geometry(sensor_id)
        self.origin = geo.origin
        self.to_local = geo.to_local
        site = scenario.site(self.config.site)
        self._up = enu_basis(site.lat_deg, site.lon_deg)[2]
        self._site_h = max(site.alt_m, 0.0)
        self._truth = truth_of(scenario)
        self._seed = (scenario.scenario.seed, zlib.crc32(sensor_id.encode()))
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and clutter and restart the random stream (scenario restart)."""
        n = len(self._truth.ids)
        self._rng = np.random.default_rng(self._seed)
        self._track_id = np.zeros(n, np.uint32)
        self._last_seen = np.full(n, -(10**9), np.int64)
        self._next_id = 1
        self._scan_no = 0
        self._sequence = 0
        # Live clutter tracks: id, polar (range, az, el), range drift, last scan alive.
        self._cl_id = np.zeros(0, np.uint32)
        self._cl_polar = np.zeros((0, 3))
        self._cl_rr = np.zeros(0)
        self._cl_until = np.zeros(0, np.int64)
        self._cl_t = 0.0

    @property
    def track_count(self) -> int:
        """Tracks the sensor holds now (STATUS track_count, ICD §5.2): live target tracks and clutter."""
        live = (self._track_id != 0) & (self._scan_no - self._last_seen - 1 <= self.config.track_drop_scans)
        return int(np.count_nonzero(live)) + int(self._cl_id.size)

    # -- building blocks (public for tests and tools) --------------------------------

    def sensor_time_ns(self, t_s: float) -> int:
        """The time the sensor's clock shows at scenario time ``t_s`` (UTC ns, with its error)."""
        c = self.config
        err_s = c.clock_offset_s + c.clock_drift_ppm * 1e-6 * t_s
        return self.epoch_ns + round((t_s + err_s) * 1e9)

    def polar(self, x: F64) -> F64:
        """(N, 6) ECEF states -> (N, 6) (range, az, el, range rate, az rate, el rate), noise-free."""
        h = _RATE_STEP_S
        p0 = ecef_to_polar(self.origin, self.to_local, x)
        step = np.concatenate([x[:, 3:] * h, np.zeros_like(x[:, 3:])], axis=1)
        pp = ecef_to_polar(self.origin, self.to_local, x + step)
        pm = ecef_to_polar(self.origin, self.to_local, x - step)
        out = np.empty((x.shape[0], 6))
        out[:, :4] = p0
        out[:, 4] = angle_diff(pp[:, 1], pm[:, 1]) / (2 * h)
        out[:, 5] = (pp[:, 2] - pm[:, 2]) / (2 * h)
        return out

    def coverage(self, x: F64, polar: F64) -> npt.NDArray[np.bool_]:
        """Which of the (N, 6) states with their polar (N, ≥3) the sensor can see."""
        c = self.config
        rng, az, el = polar[:, 0], polar[:, 1], polar[:, 2]
        ok = (rng >= c.range_min_m) & (rng <= c.range_max_m)
        ok &= (el >= np.radians(c.elevation_min_deg)) & (el <= np.radians(c.elevation_max_deg))
        if c.azimuth_width_deg < 360.0:
            off = np.abs(angle_diff(az, np.radians(c.azimuth_center_deg)))
            ok &= off <= np.radians(c.azimuth_width_deg) / 2
        # Radar horizon (4/3 Earth). Targets above the local horizontal plane are
        # always clear of the bulge; below it, compare with the horizon distance.
        d = x[:, :3] - self.origin
        above = d @ self._up >= 0.0
        h_t = np.maximum(np.asarray(pymap3d.ecef2geodetic(x[:, 0], x[:, 1], x[:, 2])[2]), 0.0)
        kr2 = 2.0 * RADAR_HORIZON_K * MEAN_EARTH_RADIUS_M
        ok &= above | (rng <= np.sqrt(kr2 * self._site_h) + np.sqrt(kr2 * h_t))
        return ok

    # -- one scan ------------------------------------------------------------------

    def scan(self, t_s: float, truth_t_s: float | None = None) -> Scan:
        """Run one scan at scenario time ``t_s``.

        ``truth_t_s`` (default ``t_s``) is the time at which truth is sampled;
        it differs only when a looping emulator wraps the scenario while the
        sensor clock runs on.
        """
        c = self.config
        rng = self._rng
        scan_no = self._scan_no
        self._scan_no += 1
        tt = t_s if truth_t_s is None else truth_t_s

        _, x, active = self._truth.at(tt)
        act = np.flatnonzero(active)
        in_cov = np.zeros(len(active), bool)
        polar = np.zeros((0, 6))
        if act.size:
            polar = self.polar(x[act])
            in_cov[act] = self.coverage(x[act], polar)
        # Draw for every target every scan so the stream does not depend on coverage.
        det_draw = rng.random(len(active)) < c.detection_probability
        detected = in_cov & det_draw
        det_rows = np.flatnonzero(detected)
        det_polar = polar[np.searchsorted(act, det_rows)] if det_rows.size else np.zeros((0, 6))

        # Track ids: keep while missed for ≤ track_drop_scans scans.
        missed = scan_no - self._last_seen[det_rows] - 1
        fresh = (self._track_id[det_rows] == 0) | (missed > c.track_drop_scans)
        for r in det_rows[fresh]:  # a handful of new tracks per scan at most
            self._track_id[r] = self._new_id()
        self._last_seen[det_rows] = scan_no

        cl_ids, cl_polar = self._clutter(scan_no, t_s, rng)
        n_t, n_c = det_rows.size, cl_ids.size
        out = np.zeros(n_t + n_c, dtype=TRACK_BATCH_DTYPE)
        truth_polar = np.concatenate([det_polar, cl_polar]) if n_c else det_polar
        sig = np.array(
            [
                c.sigma_range_m,
                c.sigma_angle_mrad * 1e-3,
                c.sigma_angle_mrad * 1e-3,
                c.sigma_range_rate_mps,
                c.sigma_angle_rate_mradps * 1e-3,
                c.sigma_angle_rate_mradps * 1e-3,
            ]
        )
        noise = rng.standard_normal((n_t + n_c, 6)) * sig
        meas = truth_polar + noise
        out["sensor_track_id"] = np.concatenate([self._track_id[det_rows], cl_ids])
        out["sensor_time_ns"] = self.sensor_time_ns(t_s)
        out["range_m"] = np.maximum(meas[:, 0], 0.0)
        out["azimuth_rad"] = wrap_2pi(meas[:, 1])
        out["elevation_rad"] = np.clip(meas[:, 2], -np.pi / 2, np.pi / 2)
        out["range_rate_mps"] = meas[:, 3]
        out["sigma_range_m"] = sig[0]
        out["sigma_azimuth_rad"] = sig[1]
        out["sigma_elevation_rad"] = sig[2]
        out["sigma_range_rate_mps"] = sig[3]
        if c.rates_valid:
            out["azimuth_rate_radps"] = meas[:, 4]
            out["elevation_rate_radps"] = meas[:, 5]
            out["sigma_azimuth_rate_radps"] = sig[4]
            out["sigma_elevation_rate_radps"] = sig[5]
        out["rates_valid"] = c.rates_valid
        # Quality: a plausible confidence, higher when close; clutter looks weak.
        q_true = 0.6 + 0.4 * (1.0 - det_polar[:, 0] / c.range_max_m)
        out["quality"] = np.clip(np.concatenate([q_true, rng.uniform(0.15, 0.45, n_c)]), 0.0, 1.0)
        target_index = np.concatenate([det_rows, np.full(n_c, -1)]).astype(np.int64)
        order = np.argsort(out["sensor_track_id"], kind="stable")
        out = out[order]
        out["sequence"] = (self._sequence + np.arange(out.size)) & _MAX_ID
        self._sequence = (self._sequence + out.size) & _MAX_ID
        return Scan(t_s=t_s, reports=out, target_index=target_index[order], in_coverage=in_cov)

    def _new_id(self) -> int:
        i = self._next_id
        self._next_id = i % _MAX_ID + 1  # u32, skipping 0
        return i

    def _clutter(
        self, scan_no: int, t_s: float, rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.uint32], F64]:
        """Age, drift and spawn clutter tracks; their noise-free polar (n, 6)."""
        c = self.config
        dt = t_s - self._cl_t
        self._cl_t = t_s
        alive = self._cl_until >= scan_no
        self._cl_id = self._cl_id[alive]
        self._cl_polar = self._cl_polar[alive]
        self._cl_rr = self._cl_rr[alive]
        self._cl_until = self._cl_until[alive]
        self._cl_polar[:, 0] += self._cl_rr * dt
        n_new = int(rng.poisson(c.clutter_rate)) if c.clutter_rate > 0 else 0
        if n_new:
            half = np.radians(c.azimuth_width_deg) / 2
            el_lo = np.radians(c.elevation_min_deg)
            el_hi = min(np.radians(c.elevation_max_deg), max(el_lo, 0.0) + _CLUTTER_MAX_EL_RAD)
            new = np.column_stack(
                [
                    rng.uniform(c.range_min_m, c.range_max_m, n_new),
                    wrap_2pi(np.radians(c.azimuth_center_deg) + rng.uniform(-half, half, n_new)),
                    rng.uniform(el_lo, el_hi, n_new),
                ]
            )
            ids = np.array([self._new_id() for _ in range(n_new)], np.uint32)
            self._cl_id = np.concatenate([self._cl_id, ids])
            self._cl_polar = np.concatenate([self._cl_polar, new])
            self._cl_rr = np.concatenate([self._cl_rr, rng.normal(0.0, _CLUTTER_DRIFT_SIGMA_MPS, n_new)])
            life = rng.integers(1, c.clutter_lifetime_scans + 1, n_new)
            self._cl_until = np.concatenate([self._cl_until, scan_no + life - 1])
        n = self._cl_id.size
        polar = np.zeros((n, 6))
        polar[:, :3] = self._cl_polar
        polar[:, 3] = self._cl_rr
        return self._cl_id.copy(), polar

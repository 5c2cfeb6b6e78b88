"""Driver of the frigate sensor feed: ASTERIX over UDP (docs/icd/frigate-feed.md).

The loop: every datagram the socket holds (``recv_batch``), one
``AsterixCodec.receive_datagram_batch`` call each (CAT062/CAT048 records come
as numpy batches), one vectorised normalisation per category of
the datagrams taken together (:mod:`gateway.normalise_ship`), one ``ReportsIn`` publish per
source. Service messages (CAT034 radar, CAT065 SDPS) are heartbeats;
``Rejected`` records are counted by reason.

Many radars on one stream (issue 22): with ``[[devices.sources]]`` each
record's SAC/SIC is looked up in a :class:`~gateway.devices.asterix_sources.SourceTable`:
its site (fixed, or an own-ship store), noise, counters, sequence and health
are that source's; a record of an unnamed SAC/SIC is counted
``unknown_source`` and placed nowhere. Without sources every record is placed
at the device's own ship (one radar per device).

Sensors in fusion: each (category, SAC, SIC) is its own fusion sensor,
registered on first sight as ``<device>/cat062/<sac>.<sic>`` or
``<device>/cat048/<sac>.<sic>``, so a system track of the SDPS and a
monoradar track of the radar under it can both feed one fused track.

CAT048 on a moving ship: reports go to fusion as KIND_SENSOR_TRACK with the
ECEF state and covariance built at the report time (own-ship uncertainty
included), keyed by the radar's track number (I048/161). Plots without a
track number are counted ("untracked_plot") and not published: the fusion
engine's plot model measures in one static frame per sensor, which a ship
does not have (docs/icd/frigate-feed.md, "Why not KIND_PLOT").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Self

import numpy as np
import numpy.typing as npt

from drivers.asterix import (
    AsterixCodec,
    ServiceMessage034,
    ServiceMessage065,
    SystemTrackBatch,
    TargetReportBatch,
)
from drivers.base import Rejected, Role
from gateway.config import AsterixConfig, DeviceConfig, GeoPointConfig
from gateway.devices.asterix_sources import Source, SourceTable
from gateway.devices.base import DeviceDriver, DriverContext, DriverServices, RawFrame, ReportsIn
from gateway.devices.ownship import OwnShipRegistry, OwnShipStore
from gateway.fusion.api import KIND_SENSOR_TRACK, ReportArrays, SensorGeometry
from gateway.normalise_ship import (
    PlotSigmas,
    TrackDefaults,
    plots_to_ecef,
    polar_height_floor,
    system_tracks_to_ecef,
)
from gateway.transports import DatagramTransport, create_transport
from hilgw.errors import TransportError
from hilgw.geo import local_geometry
from hilgw.v1 import health_pb2

__all__ = ["AsterixDriver"]

log = logging.getLogger(__name__)
DEG = np.pi / 180.0
_NOGO_STATE = {
    0: health_pb2.DEVICE_STATE_UP,
    1: health_pb2.DEVICE_STATE_DEGRADED,
    2: health_pb2.DEVICE_STATE_DEGRADED,
}
_NOGO_TEXT = {0: "operational", 1: "degraded", 2: "NOGO", 3: "invalid NOGO value"}
_CAT034_TEXT = {1: "north marker", 2: "sector crossing", 3: "geographical filtering", 4: "jamming strobe"}


def plot_sigmas(c: AsterixConfig) -> PlotSigmas:
    """The CAT048 noise model of a config block."""
    return PlotSigmas(
        range_m=c.sigma_range_m,
        azimuth_rad=c.sigma_azimuth_mrad * 1e-3,
        height_m=c.sigma_height_m,
        ground_speed_mps=c.sigma_ground_speed_mps,
        track_heading_rad=c.sigma_track_heading_deg * DEG,
        vertical_speed_mps=c.sigma_vertical_speed_mps,
        unknown_speed_mps=c.unknown_speed_sigma_mps,
        unknown_height_max_m=c.unknown_height_max_m,
        air_ceiling_m=c.air_ceiling_m,
        air_speed_max_mps=c.air_speed_max_mps,
        high_vertical_speed_mps=c.high_vertical_speed_sigma_mps,
    )


def track_defaults(c: AsterixConfig) -> TrackDefaults:
    """The CAT062 defaults of a config block."""
    return TrackDefaults(
        sigma_xy_m=c.default_sigma_xy_m,
        sigma_v_mps=c.default_sigma_v_mps,
        vertical_speed_mps=c.sigma_vertical_speed_mps,
        altitude_m=c.default_altitude_m,
        altitude_sigma_m=c.default_altitude_sigma_m,
        flight_level_sigma_m=c.sigma_flight_level_m,
        unknown_speed_mps=c.unknown_speed_sigma_mps,
        unknown_height_max_m=c.unknown_height_max_m,
        air_ceiling_m=c.air_ceiling_m,
        air_speed_max_mps=c.air_speed_max_mps,
        high_vertical_speed_mps=c.high_vertical_speed_sigma_mps,
    )


class AsterixDriver(DeviceDriver):
    """An ``asterix`` device on a UDP (unicast or multicast) transport."""

    def __init__(
        self,
        config: DeviceConfig,
        ctx: DriverContext,
        *,
        ownship: OwnShipStore | None,
        add_sensor: Callable[[SensorGeometry], int],
        registry: OwnShipRegistry | None = None,
    ) -> None:
        super().__init__(config, ctx)
        self.acfg = config.asterix if config.asterix is not None else AsterixConfig()
        self.ownship = ownship
        self.add_sensor = add_sensor
        self.sigmas = plot_sigmas(self.acfg)
        self.defaults = track_defaults(self.acfg)
        self.sensors: dict[tuple[int, int, int], int] = {}
        self.sensor_names: dict[int, str] = {}
        self._sdps: dict[tuple[int, int], int] = {}
        eds = {int(k): tuple(v) for k, v in self.acfg.editions.items()}
        self.codec = AsterixCodec(Role.GATEWAY, editions=eds, source=config.id)  # type: ignore[arg-type]  # (major, minor) pairs
        #: Many radars on one stream (issue 22): None keeps one radar per device.
        self.sources: SourceTable | None = None
        if config.sources:
            self.sources = SourceTable(config, ctx.stats, registry or OwnShipRegistry(), self.sigmas)
            ctx.stats.check = self.sources.check

    @classmethod
    def build(cls, config: DeviceConfig, ctx: DriverContext, services: DriverServices) -> Self:
        """Supervisor hook: the driver with its own-ship store and the engine's ``add_sensor``."""
        registry: OwnShipRegistry = services.ownship
        return cls(
            config,
            ctx,
            ownship=registry.for_device(config),
            add_sensor=services.add_sensor,
            registry=registry,
        )

    async def run(self) -> None:
        transport = create_transport(self.config.transport)
        if not isinstance(transport, DatagramTransport):
            raise TransportError(f"{self.config.id}: asterix needs a datagram (udp) transport")
        stats = self.ctx.stats
        async with transport:
            stats.set_state(health_pb2.DEVICE_STATE_STARTING, f"open: {transport.describe}")
            raw = self.ctx.raw
            while True:
                # Every datagram the socket held: decoded one by one, normalised
                # as one batch per source (issue 18: per-datagram numpy work was
                # most of the gateway's time at 43k records/s).
                got = await transport.recv_batch()
                t_rx = self.ctx.wall_ns()
                self.note_transport_losses(transport)
                datagrams = [data for data, _ in got]
                for data in datagrams:
                    raw.publish(RawFrame(self.config.id, "udp", t_rx, data))
                for r in self.handle_datagrams(datagrams, t_rx):
                    self.ctx.reports.publish(r)

    def open_session(self) -> None:
        """Nothing to reset: ASTERIX is decoded datagram by datagram."""

    def feed_raw(self, data: bytes, t_rx: int) -> None:
        """Handle one datagram as received at ``t_rx`` and publish (live and replay)."""
        for r in self.handle_datagram(data, t_rx):
            self.ctx.reports.publish(r)

    # ------------------------------------------------------------------ the hot path

    def handle_datagram(self, data: bytes, t_rx: int) -> list[ReportsIn]:
        """Decode, count and normalise one datagram; returns the report batches (not published)."""
        return self.handle_datagrams([data], t_rx)

    def handle_datagrams(self, datagrams: list[bytes], t_rx: int) -> list[ReportsIn]:
        """Decode and count datagrams received together at ``t_rx``; returns the
        report batches (not published).

        The same reports and counts as :meth:`handle_datagram` on each datagram
        in turn: the CAT048 and the CAT062 record batches, of one datagram or
        of several, are only joined per category (in wire order) before the
        per-source normalisation, which is vectorised, so its cost is per
        batch instead of per datagram (issue 18). A service message or a
        reject ends the joins first (the health they set follows the records
        before them, as one at a time). The categories are different fusion
        sensors, so their batches' relative order changes nothing downstream.
        """
        stats = self.ctx.stats
        out: list[ReportsIn] = []
        pending: dict[int, list[npt.NDArray[np.void]]] = {}

        def flush() -> None:
            for cat, parts in pending.items():
                rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
                out.extend(self._plots(rows, t_rx) if cat == 48 else self._tracks(rows, t_rx))
            pending.clear()

        for data in datagrams:
            stats.bytes_in += len(data)
            for ev in self.codec.receive_datagram_batch(data, t_rx):
                if isinstance(ev, TargetReportBatch | SystemTrackBatch):
                    stats.frames_in += len(ev)
                    self._mark_alive(t_rx)
                    pending.setdefault(48 if isinstance(ev, TargetReportBatch) else 62, []).append(ev.rows)
                    continue
                flush()
                if isinstance(ev, Rejected):
                    stats.frames_in += 1
                    stats.reject(ev.reason)
                    stats.last_error = str(ev.error)
                    self.drop_log.drop(ev.reason, ev.error)
                elif isinstance(ev, ServiceMessage034 | ServiceMessage065):
                    stats.frames_in += 1
                    self._service(ev, t_rx)
        flush()
        for r in out:
            stats.reports_out += len(r.reports)
        return out

    def _fresh(self, rows: npt.NDArray[np.void], t_rx: int, src: Source | None) -> npt.NDArray[np.void]:
        age = np.abs(t_rx - rows["t_ns"].astype(np.int64)) * 1e-9
        fresh = age <= self.config.max_report_age_s
        n_stale = int(rows.shape[0] - np.count_nonzero(fresh))
        if n_stale:
            self._drop(src, "stale", n_stale)
            return rows[fresh]
        return rows

    def _count_unknown_height(self, src: Source | None, n: int) -> None:
        """Count ``n`` reports published with an unknown height (absent, out of
        range or saturated height item; gateway/normalise_ship.py)."""
        if n:
            self.ctx.stats.degrade("height_unknown", n)
            if src is not None:
                src.stats.degraded["height_unknown"] += n

    def _drop(self, src: Source | None, reason: str, n: int) -> None:
        """Count ``n`` dropped records on the device and on their source."""
        self.ctx.stats.drop(reason, n)
        if src is not None:
            src.stats.drops[reason] += n

    def _source_rows(
        self, rows: npt.NDArray[np.void]
    ) -> list[tuple[int, int, Source | None, npt.NDArray[np.void]]]:
        """Rows by SAC/SIC with their configured source; records of an unknown
        source are counted (``unknown_source``) and left out (issue 22)."""
        out: list[tuple[int, int, Source | None, npt.NDArray[np.void]]] = []
        mono = self.ctx.mono()
        for sac, sic, grp in self._groups(rows):
            if self.sources is None:
                out.append((sac, sic, None, grp))
                continue
            src = self.sources.get(sac, sic, grp.shape[0])
            if src is None:
                continue
            t = grp["t_ns"].astype(np.int64)
            # Out of sequence within the source's own stream: other radars' times do not count.
            before = np.maximum.accumulate(np.concatenate(([src.newest_ns], t[:-1])))
            late = int(np.count_nonzero(t < before))
            src.records(int(t.max()), int(t.min()), grp.shape[0], late, mono)
            out.append((sac, sic, src, grp))
        return out

    def _sensor(self, cat: int, sac: int, sic: int, t_rx: int, store: OwnShipStore | None) -> int:
        key = (cat, sac, sic)
        idx = self.sensors.get(key)
        if idx is None:
            # The name is what markings are looked up by (gateway/wiring/partners.py).
            name = f"{self.config.id}/cat{cat:03d}/{sac}.{sic}"
            origin = np.zeros(3)
            if store is not None and store.has_position:
                origin = store.states_at(np.array([t_rx], np.int64)).pos[0]
            # Nominal geometry: reports of this driver are ECEF sensor tracks,
            # so the engine never measures in this frame (module docstring).
            idx = self.sensors[key] = self.add_sensor(local_geometry(name, origin))
            self.sensor_names[idx] = name
        return idx

    def _groups(self, rows: npt.NDArray[np.void]) -> list[tuple[int, int, npt.NDArray[np.void]]]:
        key = rows["sac"].astype(np.int32) * 256 + rows["sic"].astype(np.int32)
        first = int(key[0])
        if np.all(key == first):  # the usual case: one source per datagram
            return [(first >> 8, first & 0xFF, rows)]
        return [(int(k) >> 8, int(k) & 0xFF, rows[key == k]) for k in np.unique(key)]

    def _plots(self, rows: npt.NDArray[np.void], t_rx: int) -> list[ReportsIn]:
        out: list[ReportsIn] = []
        for sac, sic, src, grp in self._source_rows(rows):
            grp = self._fresh(grp, t_rx, src)
            tracked = grp["track_number"] >= 0
            n_untracked = int(grp.shape[0] - np.count_nonzero(tracked))
            if n_untracked:
                self._drop(src, "untracked_plot", n_untracked)
                grp = grp[tracked]
            if grp.shape[0] == 0:
                continue
            store = self.ownship if src is None else src.store
            if store is None or not store.has_position:
                self._drop(src, "no_ownship" if src is None or src.cfg.ownship else "no_site", grp.shape[0])
                continue
            t = grp["t_ns"].astype(np.int64)
            ship = store.states_at(t)
            if not ship.valid.all():
                self._drop(src, "ownship_stale", int(np.count_nonzero(~ship.valid)))
                keep = np.flatnonzero(ship.valid)
                if keep.size == 0:
                    continue
                grp, t = grp[keep], t[keep]
                ship = store.states_at(t)
            sigmas = self.sigmas if src is None else src.sigmas
            azref = self.acfg.azimuth_reference if src is None else src.azimuth_reference
            x, P, polar, psig, _, _ = plots_to_ecef(grp, ship, azref, sigmas)
            n = grp.shape[0]
            self._count_unknown_height(src, int(np.count_nonzero(~np.isnan(polar_height_floor(grp)))))
            reports = ReportArrays(
                sensor=np.full(n, self._sensor(48, sac, sic, t_rx, store), np.int32),
                sensor_track_id=grp["track_number"].astype(np.uint32),
                kind=np.full(n, KIND_SENSOR_TRACK, np.int8),
                t_ns=t,
                x=x,
                P=P,
                quality=np.ones(n),
                polar=polar,
                polar_sigma=psig,
            )
            if src is not None:
                src.stats.reports_out += n
            out.append(ReportsIn(self.config.id, t_rx, reports))
        return out

    def _tracks(self, rows: npt.NDArray[np.void], t_rx: int) -> list[ReportsIn]:
        out: list[ReportsIn] = []
        org = self.acfg.cat062_origin
        for sac, sic, src, grp in self._source_rows(rows):
            grp = self._fresh(grp, t_rx, src)
            ended = grp["ended"]
            if ended.any():
                # TSE: the SDPS says this is the track's last update; it carries no new state.
                self._drop(src, "track_ended", int(np.count_nonzero(ended)))
                grp = grp[~ended]
            n = grp.shape[0]
            if n == 0:
                continue
            store = self.ownship if src is None else src.store
            t = grp["t_ns"].astype(np.int64)
            o_lat = o_lon = o_h = o_cov = None
            if isinstance(org, GeoPointConfig):
                o_lat, o_lon = np.full(n, org.lat_deg * DEG), np.full(n, org.lon_deg * DEG)
                o_h = np.full(n, org.alt_m)
            elif org == "ownship" and store is not None and store.has_position:
                ship = store.states_at(t)
                o_lat, o_lon, o_h, o_cov = ship.lat, ship.lon, ship.h, ship.pos_cov
                o_lat = np.where(ship.valid, o_lat, np.nan)  # stale navigation: no origin
            x, P, ok, unknown_h = system_tracks_to_ecef(grp, self.defaults, o_lat, o_lon, o_h, o_cov)
            self._count_unknown_height(src, int(np.count_nonzero(unknown_h & ok)))
            if not ok.all():
                self._drop(src, "no_position", int(np.count_nonzero(~ok)))
                keep = np.flatnonzero(ok)
                grp, t, x, P = grp[keep], t[keep], x[keep], P[keep]
                n = keep.size
                if n == 0:
                    continue
            quality = np.where(grp["tentative"], 0.5, np.where(grp["coasting"], 0.3, 1.0))
            reports = ReportArrays(
                sensor=np.full(n, self._sensor(62, sac, sic, t_rx, store), np.int32),
                sensor_track_id=grp["track_number"].astype(np.uint32),
                kind=np.full(n, KIND_SENSOR_TRACK, np.int8),
                t_ns=t,
                x=x,
                P=P,
                quality=quality.astype(np.float64),
                polar=np.full((n, 4), np.nan),
                polar_sigma=np.full((n, 4), np.nan),
            )
            if src is not None:
                src.stats.reports_out += n
            out.append(ReportsIn(self.config.id, t_rx, reports))
        return out

    # ------------------------------------------------------------------ health

    def _service(self, ev: ServiceMessage034 | ServiceMessage065, t_rx: int) -> None:
        stats = self.ctx.stats
        if self.sources is not None:
            # Many radars: each source's health is its own; SourceTable.check
            # sets the device's state from them (never from one message).
            src = self.sources.get(ev.sac, ev.sic)
            if src is not None:
                self._mark_alive(t_rx)
                stats.device_time_ns = ev.t_ns
                src.service(ev, self.ctx.mono())
            return
        self._mark_alive(t_rx)
        stats.device_time_ns = ev.t_ns
        if isinstance(ev, ServiceMessage065):
            self._sdps[(ev.sac, ev.sic)] = ev.nogo if ev.nogo is not None else 0
            worst_src, worst = max(self._sdps.items(), key=lambda kv: kv[1])
            state = _NOGO_STATE.get(worst, health_pb2.DEVICE_STATE_DEGRADED)
            stats.set_state(state, f"SDPS {worst_src[0]}.{worst_src[1]}: {_NOGO_TEXT.get(worst, '?')}")
        elif not self._sdps or max(self._sdps.values()) == 0:
            what = _CAT034_TEXT.get(ev.message_type, f"message type {ev.message_type}")
            stats.set_state(health_pb2.DEVICE_STATE_UP, f"radar {ev.sac}.{ev.sic}: {what}")

    def _mark_alive(self, t_rx: int) -> None:
        stats = self.ctx.stats
        stats.last_frame_time_ns = t_rx
        stats.last_frame_mono = self.ctx.mono()
        if stats.state in (health_pb2.DEVICE_STATE_STARTING, health_pb2.DEVICE_STATE_DOWN):
            stats.set_state(health_pb2.DEVICE_STATE_UP, "receiving")

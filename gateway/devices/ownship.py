"""Own-ship navigation: the state store and the NMEA 0183 driver (docs/icd/frigate-feed.md).

:class:`OwnShipStore` keeps short histories of the ship's position (GGA),
velocity over ground (VTG) and attitude (HDT, PASHR) and answers
:meth:`OwnShipStore.states_at` for a whole batch of report times at once:
linear interpolation between samples (heading unwrapped), dead reckoning
with the last velocity past the newest position for at most ``max_age_s``.
Uncertainty: horizontal σ = HDOP·UERE (or the configured σ), vertical σ,
grown by σ_v·Δt for the time since the nearest position sample; attitude σ
from configuration. A fixed own ship (config) is a store with one sample and
no growth.

:class:`NmeaDriver` feeds a store from an ``nmea`` device (UDP datagrams or a
byte stream). ASTERIX drivers get the store of their ``ownship.source``
through :class:`OwnShipRegistry` (one per gateway).
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Self

import numpy as np
import pymap3d

from drivers.base import NEED_DATA, Rejected, Role
from drivers.nmea import NmeaCodec, OwnShipFix
from gateway.config import DeviceConfig, OwnShipConfig
from gateway.devices.base import DeviceDriver, DriverContext, DriverServices, RawFrame
from gateway.fusion.api import F64, I64
from gateway.transports import DatagramTransport, StreamTransport, create_transport
from hilgw.errors import TransportError
from hilgw.ship import ShipStates, enu_bases
from hilgw.v1 import health_pb2

__all__ = ["NmeaDriver", "OwnShipRegistry", "OwnShipStore", "registry_for"]

log = logging.getLogger(__name__)
DEG = math.pi / 180.0
_A_WGS84 = 6_378_137.0
_CAP = 256  # samples kept per quantity: ~25 s at 10 Hz, far more than interpolation needs


class _Series:
    """Time-ordered samples (t_ns, k float columns), bounded; out-of-order samples are dropped."""

    def __init__(self, k: int) -> None:
        self.t = np.empty(_CAP, np.int64)
        self.v = np.empty((_CAP, k))
        self.n = 0

    def add(self, t_ns: int, values: list[float]) -> bool:
        if self.n and t_ns <= self.t[self.n - 1]:
            return False  # an older or repeated stamp: keep the series monotonic
        if self.n == _CAP:
            half = _CAP // 2
            self.t[:half] = self.t[half:]
            self.v[:half] = self.v[half:]
            self.n = half
        self.t[self.n] = t_ns
        self.v[self.n] = values
        self.n += 1
        return True

    def interp(self, t: I64) -> tuple[F64, F64]:
        """Values (N, k) at ``t`` (clamped at the ends) and |Δt| (s) to the series' span."""
        ts = self.t[: self.n]
        tf = (t - ts[0]).astype(np.float64)
        xs = (ts - ts[0]).astype(np.float64)
        out = np.empty((t.shape[0], self.v.shape[1]))
        for j in range(self.v.shape[1]):
            out[:, j] = np.interp(tf, xs, self.v[: self.n, j])
        outside = np.maximum(ts[0] - t, 0) + np.maximum(t - ts[-1], 0)
        return out, outside.astype(np.float64) * 1e-9


#: HDT is ignored while a PASHR came within this long (HDT takes over when PASHR stops).
_HDT_YIELDS_NS = 2_000_000_000


class OwnShipStore:
    """Own-ship history and its interpolation at report times."""

    def __init__(self, config: OwnShipConfig) -> None:
        self.config = config
        self.pos = _Series(4)  # lat rad, lon rad, height m, horizontal sigma m
        self.vel = _Series(2)  # east, north m/s
        self.att = _Series(3)  # heading (unwrapped), pitch, roll rad
        self.samples_out_of_order = 0
        self.fixes_invalid = 0
        #: HDT headings not used because a timed attitude source (PASHR) is present.
        self.hdt_superseded = 0
        self._timed_att_ns: int | None = None
        c = config
        if c.source is None and c.lat_deg is not None and c.lon_deg is not None:
            self.pos.add(0, [c.lat_deg * DEG, c.lon_deg * DEG, c.alt_m, c.sigma_horizontal_m])
            self.att.add(0, [c.heading_deg * DEG, c.pitch_deg * DEG, c.roll_deg * DEG])
        self.fixed = c.source is None

    @property
    def has_position(self) -> bool:
        return self.pos.n > 0

    def update(self, fix: OwnShipFix) -> None:
        """Merge one NMEA sentence's fields."""
        c = self.config
        ok = True
        if fix.lat_rad is not None and fix.lon_rad is not None:
            if fix.fix_quality == 0:
                self.fixes_invalid += 1  # GGA quality 0: no fix (NMEA 0183 GGA field 6)
            else:
                h = (fix.alt_msl_m or 0.0) + (fix.geoid_sep_m or 0.0)
                sig = fix.hdop * c.uere_m if fix.hdop is not None else c.sigma_horizontal_m
                ok &= self.pos.add(fix.t_ns, [fix.lat_rad, fix.lon_rad, h, sig])
        if fix.course_rad is not None and fix.speed_mps is not None:
            ok &= self.vel.add(
                fix.t_ns, [fix.speed_mps * math.sin(fix.course_rad), fix.speed_mps * math.cos(fix.course_rad)]
            )
        if fix.sentence == "PASHR":
            last = self._timed_att_ns
            if last is None or fix.t_ns - last >= _HDT_YIELDS_NS:
                # Taking over from HDT: its receipt-stamped samples at or after
                # this PASHR's own time give way to it.
                while self.att.n and self.att.t[self.att.n - 1] >= fix.t_ns:
                    self.att.n -= 1
            self._timed_att_ns = fix.t_ns
        elif (
            fix.sentence == "HDT"
            and self._timed_att_ns is not None
            and fix.t_ns - self._timed_att_ns < _HDT_YIELDS_NS
        ):
            # HDT has no time of its own (stamped on receipt, later than the
            # PASHR time of the same instant): mixed into one series it would
            # push PASHR's heading, roll and pitch out as out-of-order. While
            # PASHR flows it carries the heading, so HDT is redundant.
            self.hdt_superseded += 1
            return
        if fix.heading_rad is not None:
            hdg = fix.heading_rad
            if self.att.n:  # unwrap against the previous sample so interpolation takes the short way
                prev = float(self.att.v[self.att.n - 1, 0])
                hdg = prev + (hdg - prev + math.pi) % (2 * math.pi) - math.pi
            pitch = fix.pitch_rad if fix.pitch_rad is not None else self._last_att(1)
            roll = fix.roll_rad if fix.roll_rad is not None else self._last_att(2)
            ok &= self.att.add(fix.t_ns, [hdg, pitch, roll])
        if not ok:
            self.samples_out_of_order += 1

    def _last_att(self, j: int) -> float:
        return float(self.att.v[self.att.n - 1, j]) if self.att.n else 0.0

    def states_at(self, t_ns: I64) -> ShipStates:
        """The radar's state at each time of ``t_ns`` (N,) (see :class:`ShipStates`)."""
        c = self.config
        t = np.asarray(t_ns, np.int64)
        n = t.shape[0]
        if self.pos.n == 0:
            z3 = np.zeros((n, 3))
            return ShipStates(
                z3, np.zeros(n), np.zeros(n), np.zeros(n), z3, z3, np.zeros((n, 3, 3)), z3, np.zeros(n, bool)
            )
        p, dt_p = self.pos.interp(t)
        v_en = self.vel.interp(t)[0] if self.vel.n else np.zeros((n, 2))
        if self.att.n:
            att, _ = self.att.interp(t)
        else:
            att = np.zeros((n, 3))
            # No heading sentence: the course over ground is the best guess.
            att[:, 0] = np.arctan2(v_en[:, 0], v_en[:, 1])
        lat, lon, h = p[:, 0], p[:, 1], p[:, 2]
        if not self.fixed:
            # Dead reckoning past (or before) the position samples: Δ = v Δt, signed.
            ahead = np.where(t > self.pos.t[self.pos.n - 1], dt_p, -dt_p)
            # Small-step spherical approximation (WGS-84 semi-major axis): metres per radian.
            lat = lat + v_en[:, 1] * ahead / _A_WGS84
            lon = lon + v_en[:, 0] * ahead / (_A_WGS84 * np.maximum(np.cos(lat), 1e-6))
        enu = enu_bases(lat, lon)
        origin = np.stack(pymap3d.geodetic2ecef(lat, lon, h, deg=False), axis=1)
        # Lever arm: body (forward, right, up) -> ECEF through heading, pitch, roll.
        arm = np.asarray(c.lever_arm_m, np.float64)
        if np.any(arm != 0.0):
            from hilgw.ship import radar_frames  # local: only with a lever arm

            dummy = ShipStates(origin, lat, lon, h, origin, att, np.zeros((n, 3, 3)), att, np.ones(n, bool))
            tl = radar_frames(dummy, "deck")
            origin = (
                origin + np.matmul(np.swapaxes(tl, 1, 2), np.broadcast_to(arm, (n, 3))[:, :, None])[:, :, 0]
            )
            h = h + arm[2]
        vel = np.matmul(
            np.swapaxes(enu, 1, 2), np.stack([v_en[:, 0], v_en[:, 1], np.zeros(n)], axis=1)[:, :, None]
        )[:, :, 0]
        grow = 0.0 if self.fixed else (c.sigma_velocity_mps * dt_p) ** 2
        cov_enu = np.zeros((n, 3, 3))
        cov_enu[:, 0, 0] = cov_enu[:, 1, 1] = p[:, 3] ** 2 + grow
        cov_enu[:, 2, 2] = c.sigma_vertical_m**2 + grow
        pos_cov = np.matmul(np.matmul(np.swapaxes(enu, 1, 2), cov_enu), enu)
        att_var = np.empty((n, 3))
        att_var[:, 0] = (c.sigma_heading_deg * DEG) ** 2 if self.att.n else math.pi**2
        att_var[:, 1:] = (c.sigma_attitude_deg * DEG) ** 2
        valid = np.ones(n, bool) if self.fixed else dt_p <= c.max_age_s
        return ShipStates(origin, lat, lon, h, vel, att, pos_cov, att_var, valid)


class OwnShipRegistry:
    """The own-ship stores of one gateway, by NMEA device id (created on first use)."""

    def __init__(self) -> None:
        self.stores: dict[str, OwnShipStore] = {}
        self.configs: dict[str, OwnShipConfig] = {}

    def for_source(self, source: str, config: OwnShipConfig | None = None) -> OwnShipStore:
        """The store fed by device ``source``; ``config`` (the consumer's block) sets its sigmas."""
        store = self.stores.get(source)
        if store is None:
            cfg = config if config is not None else OwnShipConfig(source=source)
            store = self.stores[source] = OwnShipStore(cfg)
        if config is not None and source not in self.configs:
            # The first consumer's block sets the parameters, whichever of the
            # NMEA device and its consumer the supervisor built first.
            self.configs[source] = config
            store.config = config
        return store

    def for_device(self, dev: DeviceConfig) -> OwnShipStore | None:
        """The store an ASTERIX device reads: its fixed own ship, or its source's."""
        c = dev.ownship
        if c is None:
            return None
        if c.source is None:
            return OwnShipStore(c)
        return self.for_source(c.source, c)


_REGISTRIES: weakref.WeakKeyDictionary[object, OwnShipRegistry] = weakref.WeakKeyDictionary()


def registry_for(owner: object) -> OwnShipRegistry:
    """The registry of ``owner`` (a Gateway), created on first use and freed with it."""
    reg = _REGISTRIES.get(owner)
    if reg is None:
        reg = _REGISTRIES[owner] = OwnShipRegistry()
    return reg


class NmeaDriver(DeviceDriver):
    """An ``nmea`` device: sentences over UDP (one or more lines per datagram) or a stream."""

    def __init__(self, config: DeviceConfig, ctx: DriverContext, store: OwnShipStore) -> None:
        super().__init__(config, ctx)
        self.store = store
        self._codec = NmeaCodec(Role.GATEWAY, source=config.id)

    @classmethod
    def build(cls, config: DeviceConfig, ctx: DriverContext, services: DriverServices) -> Self:
        """Supervisor hook: the driver with its gateway's store for this device id."""
        registry: OwnShipRegistry = services.ownship
        return cls(config, ctx, registry.for_source(config.id))

    async def run(self) -> None:
        transport = create_transport(self.config.transport)
        stats = self.ctx.stats
        async with transport:
            stats.set_state(health_pb2.DEVICE_STATE_STARTING, f"open: {transport.describe}")
            self.open_session()
            kind = self.config.transport.kind
            while True:
                if isinstance(transport, DatagramTransport):
                    data, _ = await transport.recv()
                    self.note_transport_losses(transport)
                elif isinstance(transport, StreamTransport):
                    data = await transport.read()
                else:
                    raise TransportError(f"{self.config.id}: nmea needs a datagram or stream transport")
                t_rx = self.ctx.wall_ns()
                self.ctx.raw.publish(RawFrame(self.config.id, kind, t_rx, data))
                self.feed_raw(data, t_rx)

    def open_session(self) -> None:
        """A fresh codec: a reopened line may start mid-sentence."""
        self._codec = NmeaCodec(Role.GATEWAY, source=self.config.id)

    def feed_raw(self, data: bytes, t_rx: int) -> None:
        """One datagram, or one chunk of a stream, as received at ``t_rx`` (live and replay)."""
        codec = self._codec
        if self.config.transport.kind == "udp":
            events: list[OwnShipFix | Rejected] = codec.receive_datagram(data, t_rx)
        else:
            codec.receive_data(data, t_rx)
            events = []
            while (ev := codec.next_event()) is not NEED_DATA:
                events.append(ev)  # type: ignore[arg-type]  # next_event gives a fix or Rejected here
        self.ctx.stats.bytes_in += len(data)
        self.handle(events, t_rx)

    def handle(self, events: list[OwnShipFix | Rejected], t_rx: int) -> None:
        """Count and apply decoded sentences (public for tests)."""
        stats = self.ctx.stats
        for ev in events:
            stats.frames_in += 1
            if isinstance(ev, Rejected):
                stats.reject(ev.reason)
                stats.last_error = str(ev.error)
                if ev.reason != "unknown_sentence":  # other sentences are ordinary NMEA traffic
                    self.drop_log.drop(ev.reason, ev.error)
                continue
            before = self.store.fixes_invalid
            late = self.store.samples_out_of_order
            self.store.update(ev)
            stats.device_time_ns = ev.t_ns
            if self.store.samples_out_of_order != late:
                # Older than what the store holds (a datagram overtaken, a
                # clock step back): not interpolated, so counted as dropped.
                stats.drop("out_of_order")
                continue
            if self.store.fixes_invalid != before:
                stats.drop("no_fix")
                stats.set_state(health_pb2.DEVICE_STATE_DEGRADED, "GGA without a position fix")
                continue
            stats.reports_out += 1
            stats.last_frame_time_ns = t_rx
            stats.last_frame_mono = self.ctx.mono()
            if stats.state != health_pb2.DEVICE_STATE_UP:
                stats.set_state(health_pb2.DEVICE_STATE_UP, "receiving")

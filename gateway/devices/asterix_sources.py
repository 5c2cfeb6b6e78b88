"""The radars of a multi-source ASTERIX stream (``[[devices.sources]]``, issue 22).

Radar networks send one ASTERIX stream carrying many radars; each record
names its source by SAC/SIC (I048/010, I034/010, I062/010, I065/010). An
``asterix`` device with a ``sources`` list looks every record's SAC/SIC up
here: a known source has its own site (a fixed point, or an own-ship store),
noise model, counters, sequence and health; an unknown one is counted
(``unknown_source``, by id) and its records are placed nowhere.

Health per source (docs/icd/frigate-feed.md, "Many radars on one stream"):
the CAT034 north marker (I034/000 type 1) or sector crossings (type 2, with
I034/020) give the antenna rotation period; once a source has sent service
messages, none for ``service_timeout_s`` (default three rotations, at least
the device's ``heartbeat_timeout_s``) makes it DOWN; records arriving while
every one is dropped make it DEGRADED with the reason; a source never heard
from is DOWN after ``heartbeat_timeout_s``, not STARTING.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

from drivers.asterix import ServiceMessage034, ServiceMessage065
from gateway.config import AsterixSourceConfig, DeviceConfig, OwnShipConfig
from gateway.devices.ownship import OwnShipRegistry, OwnShipStore
from gateway.health import ALL_REJECTED, DeviceStats, SourceStats
from gateway.normalise_ship import PlotSigmas
from hilgw.v1 import health_pb2

__all__ = ["Source", "SourceTable"]

_UP, _DEGRADED, _DOWN = (
    health_pb2.DEVICE_STATE_UP,
    health_pb2.DEVICE_STATE_DEGRADED,
    health_pb2.DEVICE_STATE_DOWN,
)
_STATE_TEXT: dict[int, str] = {
    _UP: "UP",
    _DEGRADED: "DEGRADED",
    _DOWN: "DOWN",
    health_pb2.DEVICE_STATE_STARTING: "STARTING",
}
_NOGO_TEXT = {1: "degraded", 2: "NOGO"}
#: Per-source "all records dropped" is judged over windows this long.
_WINDOW_S = 2.0


@dataclass
class Source:
    """One configured radar or SDPS of the stream."""

    cfg: AsterixSourceConfig
    stats: SourceStats
    #: Where its reports are measured from; None: no site (CAT062 WGS-84 only).
    store: OwnShipStore | None
    sigmas: PlotSigmas
    azimuth_reference: str
    #: Newest record time seen (UTC ns): the source's own sequence.
    newest_ns: int = 0
    last_service_mono: float = 0.0
    last_heard_mono: float = 0.0
    last_north_ns: int = 0
    last_sector: tuple[int, float] | None = None
    #: I065/040 NOGO of the last SDPS status (0 operational, 1 degraded, 2 NOGO).
    nogo: int = 0
    #: (records_in, reports_out, drops, monotonic s) at the window's start.
    window: tuple[int, int, Counter[str], float] = field(default_factory=lambda: (0, 0, Counter(), 0.0))

    def records(self, t_ns_newest: int, t_ns_oldest: int, n: int, out_of_sequence: int, mono: float) -> None:
        """Count ``n`` records (``out_of_sequence`` of them older than the source's newest)."""
        self.stats.records_in += n
        self.stats.out_of_sequence += out_of_sequence
        self.newest_ns = max(self.newest_ns, t_ns_newest)
        self.last_heard_mono = mono

    def service(self, ev: ServiceMessage034 | ServiceMessage065, mono: float) -> None:
        """A service message: liveness and, for CAT034, the antenna rotation period."""
        st = self.stats
        st.service_messages += 1
        self.last_service_mono = self.last_heard_mono = mono
        if isinstance(ev, ServiceMessage065):
            self.nogo = ev.nogo if ev.nogo is not None else 0
            return
        if ev.message_type == 1:  # north marker: one per revolution (CAT034 ed. 1.29 I034/000)
            if self.last_north_ns and ev.t_ns > self.last_north_ns:
                st.rotation_s = (ev.t_ns - self.last_north_ns) * 1e-9
            self.last_north_ns = ev.t_ns
        elif ev.message_type == 2 and ev.sector_azimuth_rad is not None:  # sector crossing, I034/020
            if self.last_sector is not None and ev.t_ns > self.last_sector[0]:
                turn = (ev.sector_azimuth_rad - self.last_sector[1]) % (2 * math.pi)
                if turn > 1e-6:
                    st.rotation_s = (ev.t_ns - self.last_sector[0]) * 1e-9 * 2 * math.pi / turn
            self.last_sector = (ev.t_ns, ev.sector_azimuth_rad)

    def check(self, now_mono: float, started_mono: float, heartbeat_s: float) -> None:
        """Set the source's state from its timeouts and its last window of records."""
        st = self.stats
        r0, o0, d0, t0 = self.window
        d_in, d_out = st.records_in - r0, st.reports_out - o0
        dropped = st.drops - d0
        if now_mono - t0 >= _WINDOW_S:
            self.window = (st.records_in, st.reports_out, Counter(st.drops), now_mono)
        timeout = self.cfg.service_timeout_s or max(3.0 * st.rotation_s, heartbeat_s)
        if self.last_service_mono and now_mono - self.last_service_mono > timeout:
            st.set_state(_DOWN, f"no service message for {now_mono - self.last_service_mono:.1f} s")
        elif not self.last_heard_mono and now_mono - started_mono > heartbeat_s:
            st.set_state(_DOWN, "nothing received from this source")
        elif self.last_heard_mono and now_mono - self.last_heard_mono > max(timeout, heartbeat_s):
            st.set_state(_DOWN, f"nothing for {now_mono - self.last_heard_mono:.1f} s")
        elif self.nogo:
            st.set_state(_DEGRADED, f"SDPS says {_NOGO_TEXT.get(self.nogo, 'invalid NOGO')} (I065/040)")
        elif d_in > 0 and d_out == 0 and dropped:
            why = ", ".join(f"{r} {n}" for r, n in dropped.most_common(3))
            st.set_state(_DEGRADED, f"all records rejected ({why})")
        elif self.last_heard_mono:
            rot = f", rotation {st.rotation_s:.2f} s" if st.rotation_s > 0 else ""
            st.set_state(_UP, f"receiving{rot}")


class SourceTable:
    """The configured sources of one device, by (SAC, SIC)."""

    def __init__(
        self, dev: DeviceConfig, stats: DeviceStats, registry: OwnShipRegistry, base: PlotSigmas
    ) -> None:
        self.dev = dev
        self.device_stats = stats
        self.by_id: dict[tuple[int, int], Source] = {}
        default_ref = dev.asterix.azimuth_reference if dev.asterix is not None else "north"
        for c in dev.sources:
            st = stats.sources[c.label] = SourceStats(c.label)
            self.by_id[(c.sac, c.sic)] = Source(
                cfg=c,
                stats=st,
                store=_store(c, registry),
                sigmas=replace(
                    base,
                    range_m=c.sigma_range_m or base.range_m,
                    azimuth_rad=c.sigma_azimuth_mrad * 1e-3 if c.sigma_azimuth_mrad else base.azimuth_rad,
                    height_m=c.sigma_height_m or base.height_m,
                ),
                azimuth_reference=c.azimuth_reference or default_ref,
            )
        self.started_mono: float | None = None

    def get(self, sac: int, sic: int, n: int = 1) -> Source | None:
        """The source of SAC/SIC, or None after counting ``n`` records as ``unknown_source``."""
        src = self.by_id.get((sac, sic))
        if src is None:
            self.device_stats.drop("unknown_source", n)
            self.device_stats.unknown_sources[f"{sac}.{sic}"] += n
        return src

    def check(self, now_mono: float) -> None:
        """Per-source states, and the device's from them (the gateway's health loop calls this)."""
        if self.started_mono is None:
            self.started_mono = now_mono
        for src in self.by_id.values():
            src.check(now_mono, self.started_mono, self.dev.heartbeat_timeout_s)
        st = self.device_stats
        if st.state not in (_UP, _DEGRADED) or st.detail.startswith(ALL_REJECTED):
            return  # the device-level verdicts (no frame, all rejected) come first
        bad = [s.stats for s in self.by_id.values() if s.stats.state != _UP]
        if bad:
            text = "; ".join(f"{b.name} {_STATE_TEXT.get(b.state, '?')}: {b.detail}" for b in bad)
            st.set_state(_DEGRADED, f"{len(bad)} of {len(self.by_id)} sources not up: {text}")
        else:
            st.set_state(_UP, f"{len(self.by_id)} sources up")


def _store(c: AsterixSourceConfig, registry: OwnShipRegistry) -> OwnShipStore | None:
    """The site of a source as an own-ship store (a fixed site is a store that never moves)."""
    if c.site is not None:
        s = c.site
        return OwnShipStore(OwnShipConfig(lat_deg=s.lat_deg, lon_deg=s.lon_deg, alt_m=s.alt_m))
    if c.ownship is None:
        return None
    if c.ownship.source is None:
        return OwnShipStore(c.ownship)
    return registry.for_source(c.ownship.source, c.ownship)

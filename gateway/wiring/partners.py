"""Partner feeds joined to a running gateway (docs/partners.md).

Kept apart from the supervisor so that it only names what to start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import numpy as np

from gateway.config import DeviceConfig
from gateway.fusion.api import SensorGeometry
from gateway.health import DeviceStats
from gateway.partners.inbound import PartnerInbound
from gateway.partners.output import PartnerFeed
from gateway.partners.release import SourceMarkings
from gateway.sections.partners import PartnerConfig

if TYPE_CHECKING:
    from gateway.running import RunningGateway

__all__ = ["build_partners", "source_markings"]


def source_markings(devices: list[DeviceConfig], partners: list[PartnerConfig]) -> dict[str, SourceMarkings]:
    """Markings by source id: each marked device, and each partner's inbound source (low trust)."""
    out = {d.id: SourceMarkings.from_config(d.markings) for d in devices if d.markings is not None}
    for d in devices:
        # A radar of a multi-source stream: its own fusion sensors, named by
        # the asterix driver "<device>/cat<NNN>/<sac>.<sic>" (issue 22).
        for s in d.sources:
            if s.markings is not None:
                for cat in ("cat048", "cat062"):
                    out[f"{d.id}/{cat}/{s.sac}.{s.sic}"] = SourceMarkings.from_config(s.markings)
    for p in partners:
        if p.inbound is not None:
            out[f"partner:{p.id}"] = SourceMarkings.from_config(p.inbound.markings, low_trust=True)
    return out


def build_partners(
    gw: RunningGateway, feeds: dict[str, PartnerFeed]
) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
    """One feed task per enabled partner, each feed kept in ``feeds`` by partner id;
    its inbound handler on the feed's own session."""
    tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    for p in gw.config.partners:
        if not p.enabled:
            continue
        feed = PartnerFeed(p, gw.fusion.pictures)
        feeds[p.id] = feed
        if p.inbound is not None:
            source = f"partner:{p.id}"
            stats = gw.stats[source] = DeviceStats(source, "partner", "mqtt", gateway_id=gw.config.gateway_id)
            # Partner tracks are ECEF sensor tracks: the engine never measures in this frame.
            index = gw.fusion.engine.add_sensor(SensorGeometry(source, np.zeros(3), np.eye(3)))
            handler = PartnerInbound(p, gw.reports, stats, index)
            feed.session.subscribe(handler.topic, handler, qos=1)
        tasks.append((f"partner:{p.id}", feed.run))
    return tasks

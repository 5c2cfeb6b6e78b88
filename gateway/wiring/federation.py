"""Federation joined to a running gateway: site inputs and the cue picture bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gateway.bus import Topic
from gateway.federation.fastpath import live_subject
from gateway.federation.picture import PictureBridge
from gateway.federation.sites import SiteInput
from gateway.fusion.api import SensorGeometry
from gateway.health import DeviceStats
from gateway.partners.release import SourceMarkings
from hilgw.v1 import track_pb2

if TYPE_CHECKING:
    from gateway.running import RunningGateway

__all__ = ["start_cue_picture", "start_sites"]


def start_sites(gw: RunningGateway) -> list[SiteInput]:
    """One fusion source per site, fed by the site's tracks topic on the gateway's session."""
    fed, session = gw.config.federation, gw.mqtt
    assert fed is not None
    assert session is not None
    inputs = []
    for site in fed.sites:
        source = f"site:{site.gateway_id}"
        stats = gw.stats[source] = DeviceStats(source, "federation", "mqtt", gateway_id=gw.config.gateway_id)
        # Site tracks are ECEF sensor tracks: the engine never measures in this frame.
        index = gw.fusion.engine.add_sensor(SensorGeometry(source, np.zeros(3), np.eye(3)))
        if site.markings is not None:
            gw.fusion.markings[source] = SourceMarkings.from_config(site.markings)
        handler = SiteInput(site, fed, gw.reports, stats, index)
        session.subscribe(handler.topic, handler, qos=1)
        if gw.nats is not None:  # the fast path first, the persistent session as the backstop
            gw.nats.subscribe(live_subject(site.topic_prefix, site.gateway_id), handler)
        inputs.append(handler)
    return inputs


def start_cue_picture(gw: RunningGateway) -> tuple[Topic[track_pb2.TrackBatch], PictureBridge]:
    """The topic the cue path reads when ``[cue.picture]`` names another gateway."""
    cue, session = gw.config.cue, gw.mqtt
    assert cue is not None
    assert cue.picture is not None
    assert session is not None
    topic: Topic[track_pb2.TrackBatch] = Topic("cue_picture")
    bridge = PictureBridge(cue.picture, topic)
    session.subscribe(bridge.topic, bridge, qos=1)
    if gw.nats is not None:
        gw.nats.subscribe(live_subject(cue.picture.topic_prefix, cue.picture.gateway_id), bridge)
    return topic, bridge

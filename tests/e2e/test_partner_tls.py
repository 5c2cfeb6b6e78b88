"""Two partner feeds on a real mosquitto with TLS and the deploy/ ACL
(docs/partners.md): each partner identity reads only its own topic tree,
gets only what its profile releases, and can publish nothing into the
gateway's tree or another partner's; its own inbound topic reaches the
gateway as a low-trust source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from gateway.bus import Topic
from gateway.config import MqttConfig
from gateway.devices.base import ReportsIn
from gateway.fusion.api import TrackArrays
from gateway.health import DeviceStats
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from gateway.partners.inbound import PartnerInbound
from gateway.partners.output import PartnerFeed
from gateway.partners.release import Picture, SourceMarkings
from gateway.sections.partners import PartnerConfig
from hilgw.v1 import partner_pb2, track_pb2
from tests.conftest import Mosquitto
from tests.e2e.test_broker_tls import (
    GATEWAY_CN,
    GATEWAY_ID,
    Pki,
    client,
    make_pki,
    start_tls_broker,
    tls_for,
)
from tests.unit.test_partner_feed import assessment
from tests.unit.test_partner_release import T0, one_track
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

PARTNERS = ("alpha", "bravo")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), extra=tuple(f"partner-{p}" for p in PARTNERS))


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = start_tls_broker(tmp_path_factory.mktemp("broker"), pki)
    yield b
    b.stop()


def partner_config(pid: str, broker: Mosquitto, pki: Pki, tmp: Path) -> PartnerConfig:
    return PartnerConfig.model_validate(
        {
            "id": pid,
            "release_as": "nation-x",
            "audit_log": str(tmp / f"release-{pid}.log"),
            "broker": {"port": broker.port, "tls": tls_for(pki, GATEWAY_CN).model_dump()},
            "profile": {"max_rate_hz": 20},
            "inbound": {},
        }
    )


async def drain(c: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for m in c.messages:
                got.append(m)
    return got


async def test_each_partner_reads_only_its_own_tree(pki: Pki, broker: Mosquitto, tmp_path: Path) -> None:
    pictures: Topic[Picture] = Topic("pictures")
    reports: Topic[ReportsIn] = Topic("reports")
    inbound_reports = reports.subscribe("test")
    feeds = {p: PartnerFeed(partner_config(p, broker, pki, tmp_path), pictures) for p in PARTNERS}
    stats = {p: DeviceStats(f"partner:{p}", "partner", "mqtt") for p in PARTNERS}
    for p, feed in feeds.items():
        h = PartnerInbound(feed.config, reports, stats[p], sensor_index=0, wall_ns=lambda: T0)
        feed.session.subscribe(h.topic, h)
    # The gateway's own session, publishing its internal picture on hilgw/#.
    gw = MqttSession(MqttConfig(port=broker.port, tls=tls_for(pki, GATEWAY_CN)), GATEWAY_ID)
    tasks = [asyncio.create_task(f.run()) for f in feeds.values()] + [asyncio.create_task(gw.run())]
    # Track 1 (fed by sensor 0) is releasable to alpha only; track 2 (sensor 1) to both.
    markings = (SourceMarkings(1, frozenset({"alpha"})), SourceMarkings(1, frozenset({"alpha", "bravo"})))
    a, b = one_track(sensors=(0,)), one_track(sensors=(1,))
    both = TrackArrays(
        *(np.concatenate([getattr(a, f), getattr(b, f)]) for f in TrackArrays.__slots__[:9]),
        contrib_row=np.array([0, 1], np.int32),
        contrib_sensor=np.array([0, 1], np.int32),
        contrib_sensor_track_id=np.zeros(2, np.uint32),
        contrib_t_ns=np.full(2, T0, np.int64),
    )
    both.track_id[1] = 43
    try:
        async with (
            client(broker, tls_for(pki, "partner-alpha")) as alpha,
            client(broker, tls_for(pki, "partner-bravo")) as bravo,
            client(broker, tls_for(pki, "operator-1")) as watcher,
        ):
            for c in (alpha, bravo):
                await c.subscribe("#", qos=1)  # asks for everything; the ACL decides
            await watcher.subscribe("hilgw/#", qos=1)
            sessions = [gw, *(f.session for f in feeds.values())]
            await eventually(lambda: all(s.connected for s in sessions))
            for k in range(3):
                pictures.publish(Picture(k, T0 + k * 10**9, both, markings))
                await asyncio.sleep(0.1)
            gw.enqueue(
                Outgoing(gw.topics.tracks, track_pb2.TrackBatch(gateway_id="x").SerializeToString(), 1)
            )
            # Attempts to write outside the partner's own inbound topic: dropped by the broker.
            for topic in (
                f"hilgw/{GATEWAY_ID}/authority/command",
                "partners/bravo/inbound",
                "hilgw/x/tracks",
            ):
                await alpha.publish(topic, assessment(), qos=1)
            await alpha.publish("partners/alpha/inbound", assessment(), qos=1)  # its own: accepted
            got_a, got_b, seen = await asyncio.gather(
                drain(alpha, 2.0), drain(bravo, 0.5), drain(watcher, 0.5)
            )
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    a_topics = {str(m.topic) for m in got_a}
    b_topics = {str(m.topic) for m in got_b}
    assert all(t.startswith("partners/alpha/") for t in a_topics), a_topics
    assert all(t.startswith("partners/bravo/") for t in b_topics), b_topics
    assert "partners/alpha/nation-x/picture" in a_topics
    assert "partners/bravo/nation-x/picture" in b_topics

    def released(msgs: list[aiomqtt.Message]) -> list[int]:
        return [
            len(partner_pb2.PartnerPicture.FromString(bytes(m.payload)).track_ref)  # type: ignore[arg-type]
            for m in msgs
            if str(m.topic).endswith("/picture")
        ]

    # Every picture alpha got holds both tracks; every one bravo got, only the
    # track whose source is releasable to it (a picture may be superseded by
    # a newer one under load, never cut).
    assert released(got_a)
    assert set(released(got_a)) == {2}
    assert released(got_b)
    assert set(released(got_b)) == {1}
    # Nothing the partner wrote reached the gateway's tree (the watcher reads
    # all of hilgw/#: it saw the gateway's own status and tracks, nothing else) ...
    assert {str(m.topic) for m in seen} == {f"hilgw/{GATEWAY_ID}/status", f"hilgw/{GATEWAY_ID}/tracks"}
    # ... nor bravo's inbound; alpha's own inbound arrived as reports.
    assert stats["bravo"].frames_in == 0
    assert stats["alpha"].frames_in == 1
    assert [b.device_id for b in inbound_reports.get_all()] == ["partner:alpha"]

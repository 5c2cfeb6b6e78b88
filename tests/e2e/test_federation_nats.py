"""Two site pictures and a theatre gateway over a three-node NATS JetStream
cluster on 127.0.0.1, reached over its MQTT listeners (docs/federation.md).

Each site publishes its TrackBatch at QoS 1 through its own node; the
theatre (a whole Gateway with a [federation] section) is connected to a
third. The theatre's node is SIGKILLed mid-run: the theatre fails over to
another node of its list, its persistent session keeps what was sent
meanwhile, and after dedupe every batch of both sites is accounted for
(used once, stale, or a counted gap: at most one, a known defect) and it
holds one theatre track fed by both sites."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.config import MqttConfig, parse_config
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from gateway.supervisor import Gateway
from hilgw.v1 import track_pb2
from sim_devices.nats_cluster import NatsCluster, nats_server_path
from tests.unit.test_federation import POS, VEL, site_batch
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

RATE_HZ = 20
RUN_S = 10.0
KILL_AT_S = 5.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    if nats_server_path() is None:
        pytest.fail("nats-server is not installed: run ./scripts/test, which installs it")
    c = NatsCluster(tmp_path / "nats", 3)
    c.start()
    yield c
    c.stop()


async def test_theatre_fails_over_and_loses_no_site_picture(cluster: NatsCluster) -> None:
    hosts = cluster.mqtt_hosts
    theatre_cfg = parse_config(
        {
            "gateway_id": "theatre",
            "fusion": {"publish_hz": 10.0},
            "mqtt": {
                "hosts": hosts,
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.5,
                # Above nats-server's own 4 s JetStream request timeout for loading a session.
                "connect_timeout_s": 6.0,
                "keepalive_s": 5,
            },
            "federation": {"sites": [{"gateway_id": "site-a"}, {"gateway_id": "site-b"}]},
        }
    )
    # Each site starts on a node of its own and knows the others (failover).
    sites = {
        gw: MqttSession(
            MqttConfig(hosts=hosts[k:] + hosts[:k], reconnect_initial_s=0.1, reconnect_max_s=0.5), gw
        )
        for k, gw in ((1, "site-a"), (2, "site-b"))
    }
    tasks = [asyncio.create_task(s.run()) for s in sites.values()]
    downs: list[float] = []
    ups: list[float] = []
    sent = 0
    try:
        async with Gateway(theatre_cfg) as theatre:
            assert theatre.mqtt is not None
            theatre.mqtt.on_link(lambda up: (ups if up else downs).append(time.monotonic()))
            pictures = theatre.tracks.subscribe("test", maxsize=10_000)
            mqtt = theatre.mqtt
            await eventually(lambda: mqtt.connected and all(s.connected for s in sites.values()), 30.0)
            rng = np.random.default_rng(5)
            t0 = time.monotonic()
            killed = False
            killed_address = ""
            before_kill: list[track_pb2.TrackBatch] = []
            seq = 0
            while time.monotonic() - t0 < RUN_S:
                seq += 1
                now = time.time_ns()
                truth = POS + VEL * (time.monotonic() - t0)
                for k, (gw, s) in enumerate(sites.items()):
                    b = site_batch(gw, seq, now, truth + rng.normal(0, 30, 3), VEL, track_id=3 + k)
                    s.enqueue(Outgoing(f"hilgw/{gw}/tracks", b.SerializeToString(), 1, kind="tracks"))
                sent += 1
                if not killed and time.monotonic() - t0 > KILL_AT_S:
                    before_kill = pictures.get_all()
                    killed_address = str(mqtt.address)  # the theatre's node, whichever it is
                    cluster.kill(hosts.index(killed_address))
                    killed = True
                await asyncio.sleep(1 / RATE_HZ)
            # Let what is in flight arrive (persistent session redelivery after failover).
            await eventually(lambda: all(i.last_seq >= sent for i in theatre.sites), 20.0)
            # Pictures sent before the theatre's subscription existed are not
            # counted: the theatre starts counting at the first sequence it sees.
            stats = {
                i.device_id: (i.last_seq, i.used + i.first_seq - 1, dict(theatre.stats[i.device_id].drops))
                for i in theatre.sites
            }
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    assert killed_address in hosts
    assert downs, "the theatre never saw its node go"
    back = [u for u in ups if u > downs[0]]
    assert back, "the theatre did not reconnect"
    failover_s = back[0] - downs[0]
    info = (failover_s, [round(d - downs[0], 2) for d in downs], [round(u - downs[0], 2) for u in ups], stats)
    # A bound, not the figure (benchmarks/federation/ measures it): a new node
    # takes the session only once JetStream has re-elected the leaders the
    # killed node held, seconds on a busy machine.
    assert failover_s < 30.0, info
    for device, (last, used, drops) in stats.items():
        assert last == sent, (device, last, sent, drops)
        # Every picture is accounted for after dedupe: used, too old to fuse
        # when it came (held in the cluster while JetStream re-elected), or a
        # counted gap. The goal is 0 gaps; an occasional single lost picture
        # across the failover is a known defect (docs/federation.md §5,
        # benchmarks/federation/RESULTS.md), counted, never silent.
        assert used + drops.get("stale", 0) + drops.get("gap", 0) == sent, (device, used, sent, drops)
        assert drops.get("gap", 0) <= 1, (device, drops)
    # Before the kill: one theatre track for the object, fed by both sites
    # (over the last second: a site's contribution may lapse for a step).
    confirmed = [
        t for b in before_kill[-10:] for t in b.tracks if t.status == track_pb2.TRACK_STATUS_CONFIRMED
    ]
    assert len({t.track_id for t in confirmed}) == 1
    assert {c.sensor_id for t in confirmed for c in t.contributors} == {"site:site-a", "site:site-b"}

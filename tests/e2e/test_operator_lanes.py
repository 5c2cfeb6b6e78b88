"""One command lane per operator identity (docs/cue-path.md §12), on mosquitto
started with deploy/mosquitto as shipped (TLS, client certificates, the ACL).

* Operator A's station (certificate operator-1) floods A's own lane while
  operator B (operator-2) publishes a signed HOLD on B's lane: B's HOLD is
  applied and audited, and none of the flood reached B's lane connection.
* A command signed by B's key, published on A's lane (a compromised station A
  replaying what it captured from B), is refused as ``wrong_lane`` and counted.
* A client without an operator identity (consumer-1) cannot publish on any
  operator's lane (the broker says "not authorized"; the gateway sees nothing),
  nor can operator B publish on A's lane.

No timing is asserted (slow CI): order and outcome only, with generous bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.bus import Topic
from gateway.config import MqttConfig, MqttTlsConfig
from gateway.cue.audit import read_records
from gateway.cue.keys import Key, KeyRing
from gateway.cue.path import CuePath
from gateway.outputs.commands import command_session
from hilgw.v1 import cue_pb2, track_pb2
from tests.conftest import Mosquitto
from tests.e2e.test_broker_tls import (
    GATEWAY_CN,
    GATEWAY_ID,
    Pki,
    _mqtt5_publish_reason,
    make_pki,
    paho_tls_client,
    start_tls_broker,
    tls_for,
)
from tests.unit.cue_support import KEYS, authority_command, cue_config
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

A, B = "operator-1", "operator-2"  # certificate CNs = operator ids bound in the keys file
A_SECRET, B_SECRET = bytes.fromhex("61" * 32), bytes.fromhex("62" * 32)
RING = KeyRing(
    operator={"op-a": Key("op-a", A_SECRET, A), "op-b": Key("op-b", B_SECRET, B)}, gateway=KEYS.gateway
)
FLOOD = 3000  # messages: enough to shed A's lane, short on a slow CI
HOLD, AUTO = cue_pb2.AUTHORITY_HOLD, cue_pb2.AUTHORITY_AUTO_CUE

#: Every wait here is bounded at 60 s (a flood on a slow CI machine is slow to drain).
_until = functools.partial(eventually, timeout_s=60.0)


def lane(op: str) -> str:
    return f"hilgw/{GATEWAY_ID}/lane/{op}/authority"


def signed(requested: str, seq: int, op: str) -> bytes:
    key, secret = ("op-a", A_SECRET) if op == A else ("op-b", B_SECRET)
    cmd = authority_command(
        requested, seq, time.time_ns(), key_id=key, secret=secret, operator=op, gateway=GATEWAY_ID
    )
    return cmd.SerializeToString()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), extra=(B,))


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = start_tls_broker(tmp_path_factory.mktemp("broker"), pki)
    yield b
    b.stop()


def _publish(broker: Mosquitto, tls: MqttTlsConfig, client_id: str, msgs: list[tuple[str, bytes]]) -> None:
    """QoS 1, each acknowledged: the broker has dealt with it (delivered or dropped)."""
    c = paho_tls_client(broker, tls, client_id)
    try:
        for topic, payload in msgs:
            c.publish(topic, payload, qos=1).wait_for_publish(30)  # type: ignore[attr-defined]
    finally:
        c.disconnect()  # type: ignore[attr-defined]
        c.loop_stop()  # type: ignore[attr-defined]


def _flood(broker: Mosquitto, tls: MqttTlsConfig, topic: str) -> None:
    c = paho_tls_client(broker, tls, "station-a-rogue")
    try:
        junk = [bytes.fromhex("08631001"), b"\x00" * 2000, b"\xff" * 7]
        for i in range(FLOOD):
            c.publish(topic, junk[i % 3], qos=0)  # type: ignore[attr-defined]
        c.publish(topic, b"\x01junk", qos=1).wait_for_publish(30)  # type: ignore[attr-defined]
    finally:
        c.disconnect()  # type: ignore[attr-defined]
        c.loop_stop()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def _gateway(tmp: Path, pki: Pki, broker: Mosquitto) -> AsyncIterator[CuePath]:
    cfg = cue_config(tmp, launchers=[], local_hold_signal=False)
    # A client id of its own per test: the broker keeps each lane's persistent session
    # (and what was queued for it) between the tests of this module.
    mqtt = MqttConfig(
        port=broker.port, tls=tls_for(pki, GATEWAY_CN), reconnect_initial_s=0.1, client_id=f"gw-{tmp.name}"
    )
    session = command_session(mqtt, GATEWAY_ID)
    path = CuePath(
        cfg, GATEWAY_ID, tracks=Topic[track_pb2.TrackBatch]("tracks"), mqtt=mqtt, session=session, keys=RING
    )
    tasks = [asyncio.create_task(session.run()), asyncio.create_task(path.run())]
    try:
        await asyncio.wait_for(path.mqtt_connected.wait(), 20)
        # Both lanes connected and subscribed (SUBACKed) before anyone publishes.
        await _until(
            lambda: (
                set(path.lanes) == {A, B}
                and all(s._subs and all(x.acks for x in s._subs) for s in path.lanes.values())
            )
        )
        yield path
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def _authority(path: CuePath) -> int:
    return path.core.authority.value if path.core is not None else -1


def _changes(path: CuePath) -> list[tuple[str, int]]:
    recs = read_records(path.config.audit_path)
    return [(r["data"]["new"], r["data"]["sequence"]) for r in recs if r["kind"] == "authority_changed"]


async def test_a_flood_on_one_lane_does_not_reach_another_operators_hold(
    tmp_path: Path, pki: Pki, broker: Mosquitto
) -> None:
    async with _gateway(tmp_path, pki, broker) as path:
        assert _authority(path) == HOLD  # HOLD at start
        await asyncio.to_thread(
            _publish, broker, tls_for(pki, A), "station-a", [(lane(A), signed("auto_cue", 11, A))]
        )
        await _until(lambda: _authority(path) == AUTO)
        flood = threading.Thread(target=_flood, args=(broker, tls_for(pki, A), lane(A)))
        flood.start()
        try:
            await asyncio.sleep(0.05)
            await asyncio.to_thread(
                _publish, broker, tls_for(pki, B), "station-b", [(lane(B), signed("hold", 21, B))]
            )
            await _until(lambda: _authority(path) == HOLD)
        finally:
            await asyncio.to_thread(flood.join, 60)
        # A's flood went to A's lane connection only: B's read nothing but B's HOLD.
        lane_a, lane_b = path.lanes[A], path.lanes[B]
        await _until(lambda: lane_a.received["handled"] + lane_a.received["shed"] > 1)
        assert lane_b.received == {"handled": 1}
        assert lane_b.sheds == 0
        assert path.faults == 0
    assert ("HOLD", 21) in _changes(path)
    assert _changes(path)[-1] == ("HOLD", 21)


async def test_a_command_signed_by_b_on_as_lane_is_refused_and_counted(
    tmp_path: Path, pki: Pki, broker: Mosquitto
) -> None:
    async with _gateway(tmp_path, pki, broker) as path:
        # Station A replays a command B signed (captured), on A's own lane.
        await asyncio.to_thread(
            _publish, broker, tls_for(pki, A), "station-a", [(lane(A), signed("auto_cue", 31, B))]
        )
        await _until(lambda: path.intake.rejected.get("wrong_lane") == 1)
        assert _authority(path) == HOLD  # no authority without the right operator
        # The same command from B on B's lane is B's: accepted (positive control).
        await asyncio.to_thread(
            _publish, broker, tls_for(pki, B), "station-b", [(lane(B), signed("auto_cue", 32, B))]
        )
        await _until(lambda: _authority(path) == AUTO)
        # The refusal is journaled in the per-second summary of rejections.
        await _until(
            lambda: any(
                r["kind"] == "commands_rejected" and r["data"]["counts"].get("wrong_lane")
                for r in read_records(path.config.audit_path)
            )
        )
    assert ("AUTO_CUE", 31) not in _changes(path)
    assert _changes(path)[-1] == ("AUTO_CUE", 32)


async def test_only_the_operator_itself_can_publish_on_its_lane(
    tmp_path: Path, pki: Pki, broker: Mosquitto
) -> None:
    # The broker's answer (MQTT 5 PUBACK reason): 0x87 "not authorized" for anyone else.
    assert await asyncio.to_thread(_mqtt5_publish_reason, broker, tls_for(pki, "consumer-1"), lane(A)) == 0x87
    assert await asyncio.to_thread(_mqtt5_publish_reason, broker, tls_for(pki, B), lane(A)) == 0x87
    assert await asyncio.to_thread(_mqtt5_publish_reason, broker, tls_for(pki, A), lane(A)) < 0x80
    async with _gateway(tmp_path, pki, broker) as path:
        # A command A signed, published on A's lane by consumer-1 and by B: dropped by the broker.
        for i, who in enumerate(("consumer-1", B)):
            await asyncio.to_thread(
                _publish,
                broker,
                tls_for(pki, who),
                f"intruder-{i}",
                [(lane(A), signed("auto_cue", 41 + i, A))],
            )
        # Positive control, after them: A's own command on A's lane arrives.
        await asyncio.to_thread(
            _publish, broker, tls_for(pki, A), "station-a", [(lane(A), signed("auto_cue", 50, A))]
        )
        await _until(lambda: _authority(path) == AUTO)
        assert path.intake.received == 1
        assert path.lanes[A].received == {"handled": 1}
    assert _changes(path)[-1] == ("AUTO_CUE", 50)


async def test_the_gateway_reads_each_bound_operators_lane_and_counts_it(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # As `hilgw run` wires it (supervisor, keys file with op-alice bound to "alice",
    # command_lanes "auto" by default): a lane connection for alice, on /metrics.
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway.config import parse_config
    from gateway.metrics import GatewayMetrics
    from gateway.supervisor import Gateway
    from tests.e2e.cue_rig import write_keys_file

    raw = {
        "gateway_id": "gw-lanes",
        "mqtt": {"port": mosquitto.port, "reconnect_initial_s": 0.1},
        "cue": {"keys_file": str(write_keys_file(tmp_path)), "audit_path": str(tmp_path / "audit.jsonl")},
    }
    async with Gateway(parse_config(raw)) as gw:
        cue = gw.cue
        assert cue is not None
        await _until(lambda: "alice" in cue.lanes and all(x.acks for x in cue.lanes["alice"]._subs))
        assert cue.lanes["alice"].client_id == "hilgw-gw-lanes-lane-alice"
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="alice-station")
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        try:
            hold = authority_command("hold", 5, time.time_ns(), gateway="gw-lanes").SerializeToString()
            c.publish("hilgw/gw-lanes/lane/alice/authority", hold, qos=1).wait_for_publish(10)
        finally:
            c.disconnect()
            c.loop_stop()
        await _until(lambda: cue.intake.passed == 1)
        assert cue.lanes["alice"].received["handled"] == 1
        text = GatewayMetrics(gw).exposition().decode()
        assert 'hilgw_mqtt_lane_connected{operator="alice"} 1.0' in text
        assert 'hilgw_mqtt_lane_sheds_total{operator="alice"} 0.0' in text


async def test_with_shared_topics_off_only_the_lanes_are_read(
    tmp_path: Path, pki: Pki, broker: Mosquitto
) -> None:
    cfg = cue_config(tmp_path, launchers=[], local_hold_signal=False)
    mqtt = MqttConfig(
        port=broker.port,
        tls=tls_for(pki, GATEWAY_CN),
        reconnect_initial_s=0.1,
        client_id=f"gw-{tmp_path.name}",
        command_shared_topics=False,
    )
    session = command_session(mqtt, GATEWAY_ID)
    path = CuePath(
        cfg, GATEWAY_ID, tracks=Topic[track_pb2.TrackBatch]("tracks"), mqtt=mqtt, session=session, keys=RING
    )
    tasks = [asyncio.create_task(session.run()), asyncio.create_task(path.run())]
    try:
        await asyncio.wait_for(path.mqtt_connected.wait(), 20)
        await _until(
            lambda: set(path.lanes) == {A, B} and all(x.acks for s in path.lanes.values() for x in s._subs)
        )
        assert session._subs == []  # the command connection subscribes nothing: it only publishes
        shared = f"hilgw/{GATEWAY_ID}/authority/command"  # operator-1 may still write it (ACL)
        await asyncio.to_thread(
            _publish, broker, tls_for(pki, A), "station-a", [(shared, signed("auto_cue", 61, A))]
        )
        await asyncio.to_thread(
            _publish, broker, tls_for(pki, A), "station-a", [(lane(A), signed("auto_cue", 62, A))]
        )
        await _until(lambda: _authority(path) == AUTO)
        assert path.intake.received == 1  # the lane's; the shared topic's was not read
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    assert _changes(path)[-1] == ("AUTO_CUE", 62)

"""The cue path under its broker's faults (issue 15, docs/cue-path.md §11): a real
mosquitto is SIGKILLed and restarted under a running cue path.

* A blip shorter than ``operator_link_timeout_s``: the task lives on, authority
  and the live cue are kept, the link's loss and return are audited.
* An outage longer than that: authority falls to HOLD (reason
  ``operator_link_lost``, audited), the live cue is cancelled at the launcher,
  the path reconnects by itself and publishes the HOLD retained.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.bus import Topic
from gateway.config import MqttConfig
from gateway.cue.audit import read_records, verify_file
from gateway.cue.link import Heartbeat
from gateway.cue.memory_link import FakeLauncher, MemoryLink
from gateway.cue.path import CuePath
from hilgw.v1 import cue_pb2, track_pb2
from tests.conftest import Mosquitto
from tests.unit.cue_support import GW, KEYS, L1_SECRET, authority_command, cue_config, make_batch, make_track
from tests.waiting import WAIT_S, eventually

pytestmark = pytest.mark.e2e

#: The operator-link grace: a blip (kill, 0.3 s, restart, reconnect) fits in it on a busy machine.
GRACE_S = 3.0


class Bench:
    """A cue path on the broker, a fake launcher (heartbeats) and a confirmed track in its volume."""

    def __init__(self, tmp: Path, port: int) -> None:
        cfg = cue_config(tmp, operator_link_timeout_s=GRACE_S, cue_validity_s=60.0)
        mq = MqttConfig(port=port, reconnect_initial_s=0.05, reconnect_max_s=0.2, reconnect_reset_s=0.5)
        self.port = port
        self.audit = cfg.audit_path
        self.tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
        self.path = CuePath(cfg, GW, tracks=self.tracks, keys=KEYS, fsync=False, mqtt=mq, mqtt_port=port)
        self.launcher = FakeLauncher("L1", {1: L1_SECRET}, time.time_ns)
        self.path.add_link(MemoryLink(self.launcher, self.path.launcher_event))
        self.task = asyncio.create_task(self.path.run())
        self.feeder = asyncio.create_task(self._feed())
        self.sequence = 0

    async def _feed(self) -> None:
        while True:
            t = time.time_ns()
            self.tracks.publish(make_batch([make_track(1, t_ns=t)], t))
            self.path.launcher_event(Heartbeat("L1"))
            await asyncio.sleep(0.05)

    async def command(self, requested: str) -> None:
        """An operator raises or lowers authority over the broker (signed)."""
        self.sequence += 1
        cmd = authority_command(requested, self.sequence, time.time_ns())
        async with aiomqtt.Client("127.0.0.1", self.port) as op:
            await op.publish(f"hilgw/{GW}/authority/command", cmd.SerializeToString(), qos=1)

    @property
    def authority(self) -> int:
        assert self.path.core is not None
        return int(self.path.core.authority.value)

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in read_records(self.audit) if r["kind"] == kind]

    async def close(self) -> None:
        for t in (self.feeder, self.task):
            t.cancel()
        async with asyncio.timeout(10):
            for t in (self.feeder, self.task):
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def retained_authority(port: int) -> cue_pb2.AuthorityState:
    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe(f"hilgw/{GW}/authority", qos=1)
        async with asyncio.timeout(5):
            msg = await anext(sub.messages)
    return cue_pb2.AuthorityState.FromString(bytes(msg.payload))  # type: ignore[arg-type]


async def test_cue_path_survives_broker_sigkill_and_follows_the_link_policy(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    bench = Bench(tmp_path, mosquitto.port)
    try:
        await asyncio.wait_for(bench.path.mqtt_connected.wait(), WAIT_S)
        await bench.command("auto_cue")
        await eventually(lambda: bool(bench.launcher.accepted))
        live = bench.launcher.accepted[0].cue_id

        # 1. A blip shorter than the grace: nothing changes but the audit.
        await asyncio.to_thread(mosquitto.kill)
        await eventually(lambda: not bench.path.mqtt_connected.is_set())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(mosquitto.start)
        await eventually(lambda: bench.path.mqtt_connected.is_set())
        await asyncio.sleep(0.2)
        assert not bench.task.done(), bench.task  # today's code: the ExceptionGroup ended it
        assert bench.authority == cue_pb2.AUTHORITY_AUTO_CUE
        assert not bench.launcher.cancels
        links = [r["data"]["up"] for r in bench.records("operator_link")]
        assert links[-2:] == [False, True]

        # 2. An outage longer than the grace: HOLD, audited, the live cue cancelled.
        await asyncio.to_thread(mosquitto.kill)
        lost = time.monotonic()
        await eventually(lambda: bench.authority == cue_pb2.AUTHORITY_HOLD)
        assert time.monotonic() - lost >= GRACE_S - 0.1  # not before the grace ran out
        await eventually(lambda: bool(bench.launcher.cancels))
        assert bench.launcher.cancels[0].cue_id == live
        assert not bench.task.done()
        (change,) = [r for r in bench.records("authority_changed") if r["data"]["new"] == "HOLD"]
        assert change["data"]["reason"] == "operator_link_lost"
        assert change["data"]["by"] == "operator_link"
        cancelled = [r for r in bench.records("cancelled") if r["data"].get("cue_id") == live]
        assert cancelled
        assert cancelled[0]["data"]["why"] == "authority_hold"

        # The broker returns: the path reconnects by itself and says HOLD, retained.
        await asyncio.to_thread(mosquitto.start)
        await eventually(lambda: bench.path.mqtt_connected.is_set())
        state = await retained_authority(mosquitto.port)
        assert state.authority == cue_pb2.AUTHORITY_HOLD
        assert state.reason == "operator_link_lost"
        assert bench.authority == cue_pb2.AUTHORITY_HOLD  # an operator must raise it again

        # ... and the operator can: commands flow on the new connection.
        await bench.command("auto_cue")
        await eventually(lambda: bench.authority == cue_pb2.AUTHORITY_AUTO_CUE)
        assert not bench.task.done()
    finally:
        await bench.close()
    assert verify_file(bench.audit).ok

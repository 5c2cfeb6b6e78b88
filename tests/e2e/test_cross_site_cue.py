"""A cross-site cue (docs/federation.md §4): a launcher site's gateway cues
its own launcher (an emulator process on a pty) on a track of the theatre
picture that only other sites' sensors hold. The theatre's picture arrives
over the broker; authority, rules and the audit are the launcher site's; a
single-source theatre track is withheld (``single_source``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from gateway.config import MqttConfig, load_config
from gateway.cue.audit import read_records, verify_file
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from gateway.supervisor import Gateway
from hilgw.v1 import cue_pb2
from tests.conftest import Mosquitto
from tests.e2e.test_cue_e2e import launcher_emulator, write_config
from tests.unit.cue_support import authority_command, make_batch, make_track
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_launcher_site_cues_on_the_theatre_picture(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with launcher_emulator() as emu:
        cfg_file = write_config(tmp_path, mosquitto.port, emu.ready["pty"])
        text = cfg_file.read_text().replace(
            "approval_timeout_s = 20.0",
            'approval_timeout_s = 20.0\nrules = { min_sources = 2 }\npicture = { gateway_id = "theatre" }',
        )
        cfg_file.write_text(text)
        cfg = load_config(cfg_file)
        theatre = MqttSession(MqttConfig(port=mosquitto.port), "theatre")
        theatre_task = asyncio.create_task(theatre.run())

        async def publish_theatre() -> None:
            seq = 0
            while True:
                seq += 1
                t = time.time_ns()
                held_by_two = make_track(7, t_ns=t, sensors=("site:radar-site", "site:frigate"))
                held_by_one = make_track(8, lat=54.3, t_ns=t, sensors=("site:radar-site",))
                batch = make_batch([held_by_two, held_by_one], t, seq=seq)
                batch.gateway_id, batch.epoch_ns = "theatre", 1
                theatre.enqueue(Outgoing("hilgw/theatre/tracks", batch.SerializeToString(), 1, kind="tracks"))
                await asyncio.sleep(0.2)

        feeder = asyncio.create_task(publish_theatre())
        try:
            async with Gateway(cfg) as gw:
                assert gw.cue is not None
                assert gw.cue_picture is not None
                session = gw.mqtt
                assert session is not None
                await eventually(lambda: session.connected and theatre.connected)
                await eventually(lambda: gw.cue_picture is not None and gw.cue_picture.counts["used"] > 2)
                cmd = authority_command("auto_cue", 1, time.time_ns(), gateway="gw-test")
                session.enqueue(
                    Outgoing("hilgw/gw-test/authority/command", cmd.SerializeToString(), 1, kind="authority")
                )
                await eventually(lambda: len(emu.accepted()) >= 1)
                core = gw.cue.core
                assert core is not None
                assert core.authority.value == cue_pb2.AUTHORITY_AUTO_CUE
        finally:
            for task in (feeder, theatre_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    audit = tmp_path / "audit.jsonl"
    assert verify_file(audit).ok
    records = list(read_records(audit))
    assert [r for r in records if r["kind"] == "cue_sent" and r["data"]["launcher"] == "L1"]
    # Only the track two sites hold was ever a candidate: the single-source
    # one fails the rules (min_sources = 2) and never reaches the launcher.
    assert {r["data"]["track"] for r in records if r["kind"] == "candidate"} == {7}

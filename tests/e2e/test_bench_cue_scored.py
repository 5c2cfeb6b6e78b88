"""End to end on a bench: a scenario with a radar and a launcher, both run as
emulator processes by the gateway's bench mode; the cue path (AUTO_CUE, by an
authenticated operator command) cues the launcher, the emulated launcher acks,
and the gateway's live scoring reports, per target, the time from first
detection to confirmed track and to first cue (issue 6 §3)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path

import aiomqtt
import pytest

from gateway.config import parse_config
from gateway.supervisor import Gateway
from hilgw.v1 import cue_pb2, truth_pb2
from tests.conftest import Mosquitto
from tests.e2e.cue_rig import write_keys_file
from tests.e2e.test_score_e2e import SCENARIO as RADAR_SCENARIO
from tests.unit.cue_support import authority_command
from tests.waiting import READY_S, eventually

pytestmark = pytest.mark.e2e

KEY_ENV = "HILGW_TEST_BENCH_LAUNCHER_KEY"
LAUNCHER = f"""
[[launchers]]
id = "lnch"
site = "s"
transport = "serial"
keys = {{ 1 = "env:{KEY_ENV}" }}
heartbeat_hz = 10.0
range_max_m = 200000.0
"""


async def test_bench_cues_are_acked_and_scored(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "5e" * 32)
    scenario = tmp_path / "bench.toml"
    scenario.write_text(RADAR_SCENARIO + LAUNCHER)
    keys = write_keys_file(tmp_path)
    gw_id = "e2e-bench-cue"
    cfg = parse_config(
        {
            "gateway_id": gw_id,
            "mqtt": {"port": mosquitto.port},
            "fusion": {"publish_hz": 4.0},
            "emulation": {"scenario": str(scenario), "transport": "pty"},
            "scoring": {"truth_topic": "hilgw/truth", "cutoff_m": 2000.0, "publish_hz": 2.0},
            "cue": {
                "keys_file": str(keys),
                "audit_path": str(tmp_path / "audit.jsonl"),
                "rules": {"min_quality": 0.0},
                "launchers": [
                    {
                        "id": "lnch",
                        "coverage": {"lat_deg": 45.0, "lon_deg": -30.0, "alt_m": 20.0, "max_range_m": 2e5},
                    }
                ],
            },
        }
    )
    reports: list[truth_pb2.ScoreReport] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe(f"hilgw/{gw_id}/score", qos=1)
        async with Gateway(cfg) as gw:
            assert sorted(d.id for d in gw.devices) == ["lnch", "radar"]
            await eventually(lambda: gw.cue is not None and gw.cue.core is not None)
            assert gw.cue is not None
            core = gw.cue.core
            assert core is not None
            assert core.authority.value == cue_pb2.AUTHORITY_HOLD  # bench mode starts in HOLD too
            cmd = authority_command("auto_cue", 1, time.time_ns(), gateway=gw_id)
            gw.cue.command("authority", cmd.SerializeToString())
            await eventually(lambda: core.authority.value == cue_pb2.AUTHORITY_AUTO_CUE)
            with contextlib.suppress(TimeoutError):  # a bound for a loaded machine; both cued ends it
                async with asyncio.timeout(READY_S):
                    async for msg in sub.messages:
                        rep = truth_pb2.ScoreReport.FromString(bytes(msg.payload))
                        reports.append(rep)
                        if len(rep.targets) == 2 and all(t.first_cue_time_ns for t in rep.targets):
                            break
            acked = [c for c in core.cue_list().cues if c.status == cue_pb2.CUE_STATUS_ACKED]
            assert acked, "no cue was acked by the emulated launcher"

    assert reports, "no score report"
    last = reports[-1]
    cued = [t for t in last.targets if t.first_cue_time_ns]
    assert len(cued) == 2, last
    for t in cued:
        assert 0.0 <= t.detection_to_confirmed_s <= t.detection_to_cue_s < 15.0, t
        assert math.isfinite(t.detection_to_cue_s)

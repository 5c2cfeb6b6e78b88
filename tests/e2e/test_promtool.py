"""The /metrics exposition passes Prometheus' own linter (``promtool check
metrics``, issue 14): metric names, unit suffixes, ``_total`` on counters,
HELP text and label names, checked by a tool nobody here wrote.

One gateway with as many metric families as one process can show: a serial
radar, a multi-source ASTERIX device (per-source families), a launcher with
the cue path, MQTT to a real broker, recording, the web display and scoring.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.base import Role
from drivers.serial_radar import SerialRadarCodec
from gateway.config import parse_config
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from tests.conftest import Mosquitto, free_port
from tests.e2e import multi_radar_bench as mb
from tests.e2e.test_metrics import one_report
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run ./scripts/test, which installs Debian's prometheus")
    return exe


def config(tmp: Path, broker: int) -> dict[str, Any]:
    keys = tmp / "keys.toml"
    keys.write_text(f'[operator.op-alice]\nsecret = "{"11" * 32}"\noperator = "alice"\n')
    os.chmod(keys, 0o600)
    asterix = mb.one_stream_device(free_port())
    asterix["transport"] = {"kind": "udp", "bind_port": asterix["transport"]["bind_port"]}
    return {
        "gateway_id": "gw-lint",
        "mqtt": {"port": broker},
        "health_interval_s": 0.1,
        "devices": [
            {
                "id": "radar-1",
                "protocol": "serial_radar",
                "wire_sensor_id": 7,
                "transport": {"kind": "memory", "name": f"lint-radar-{tmp.name}"},
                "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
            },
            asterix,
            {
                "id": "L1",
                "protocol": "launcher",
                "launcher_id": 1,
                "cue_key_id": 1,
                "cue_keys": {1: "hex:" + "b2" * 32},
                "transport": {"kind": "memory", "name": f"lint-l1-{tmp.name}"},
            },
        ],
        "cue": {
            "keys_file": str(keys),
            "audit_path": str(tmp / "audit.jsonl"),
            "launchers": [
                {"id": "L1", "coverage": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 0.0, "max_range_m": 1e5}}
            ],
        },
        "recording": {"path": str(tmp / "rec.mcap")},
        "web": {"port": 0},
        "scoring": {"truth_topic": "truth/lint"},
        "metrics": {"port": 0},
    }


async def test_metrics_pass_promtool(tmp_path: Path, mosquitto: Mosquitto) -> None:
    exe = promtool()
    cfg = parse_config(config(tmp_path, mosquitto.port))
    try:
        async with Gateway(cfg) as gw, aiohttp.ClientSession() as http:
            _, dev_end = memory_registry.link(f"lint-radar-{tmp_path.name}")
            await dev_end.open()
            wire = SerialRadarCodec(Role.DEVICE, sensor_id=7).encode_track_batch(one_report(time.time_ns()))
            await dev_end.write(wire)
            await dev_end.write(wire[:-3] + b"\x55\x55\x00")  # a bad CRC: a drop with a reason label
            await eventually(lambda: gw.stats["radar-1"].frames_in == 2, what="2 frames in")
            await eventually(lambda: gw.mqtt is not None and gw.mqtt.connected, what="the broker connection")
            await eventually(lambda: gw.cue is not None and gw.cue.running, what="the cue path running")
            await eventually(lambda: bool(gw.fusion.step_seconds), what="a fusion step")
            url = f"http://127.0.0.1:{gw.endpoints['metrics'].port}/metrics"
            async with http.get(url) as resp:
                assert resp.status == 200
                text = await resp.text()
    finally:
        for name in (f"lint-radar-{tmp_path.name}", f"lint-l1-{tmp_path.name}"):
            memory_registry.forget(name)

    # The families each part of the gateway adds are there (else the lint below checks less).
    names = {fam.name for fam in text_string_to_metric_families(text)}
    for family in (
        "hilgw_device_frames",
        "hilgw_source_records",
        "hilgw_fusion_reports",
        "hilgw_fusion_step_seconds_median",
        "hilgw_mqtt_published",
        "hilgw_cue_commands_received",
        "hilgw_recording_messages",
        "hilgw_web_clients",
        "hilgw_scoring_truth_rejected",
        "hilgw_frame_to_track_seconds",
        "hilgw_stage_seconds",
    ):
        assert family in names, f"{family} missing from /metrics"
    res = await asyncio.to_thread(
        subprocess.run, [exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    findings = (res.stdout + res.stderr).strip()
    assert not findings, f"promtool check metrics:\n{findings}"
    assert res.returncode == 0

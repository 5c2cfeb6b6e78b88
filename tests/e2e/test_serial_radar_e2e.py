"""End to end: the serial radar emulator as its own process on a pty -> the
gateway -> a real mosquitto on 127.0.0.1 -> a subscriber that decodes
SystemTrack protobufs and checks them against the scenario's truth."""

from __future__ import annotations

import asyncio
import contextlib
import re
from importlib import resources
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from gateway.config import parse_config
from gateway.supervisor import Gateway
from hilgw.v1 import health_pb2, report_pb2, track_pb2
from sim_devices.scenario import resolve_scenario
from sim_devices.truth import truth_at
from tests.conftest import Mosquitto

pytestmark = pytest.mark.e2e

# chi-square with 3 degrees of freedom at 1 - 1e-6: a correct 3-D position
# with a consistent covariance lies inside this gate except once in a million.
CHI2_3DOF = 30.7


async def test_emulated_radar_tracks_reach_mqtt_and_match_truth(mosquitto: Mosquitto, tmp_path: Path) -> None:
    # The bundled scenario without clutter: every confirmed track then has a
    # truth target behind it, which is what this test checks.
    demo = resources.files("sim_devices").joinpath("scenarios", "demo.toml").read_text()
    scenario_file = tmp_path / "demo-no-clutter.toml"
    scenario_file.write_text(re.sub(r"(?m)^clutter_rate = .*$", "clutter_rate = 0.0", demo))
    cfg = parse_config(
        {
            "gateway_id": "e2e",
            "mqtt": {"port": mosquitto.port, "publish_reports": True},
            "fusion": {"publish_hz": 4.0},
            "emulation": {"scenario": str(scenario_file), "transport": "pty", "only": ["radar-fwd"]},
        }
    )
    scenario = resolve_scenario(scenario_file)
    batches: list[track_pb2.TrackBatch] = []
    health: list[health_pb2.DeviceHealth] = []
    reports: list[report_pb2.SensorReportBatch] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe("hilgw/e2e/tracks")
        await sub.subscribe("hilgw/e2e/health/+", qos=1)
        await sub.subscribe("hilgw/e2e/reports/radar-fwd")
        async with Gateway(cfg) as gw:
            assert gw.emulation is not None
            epoch_ns = gw.emulation.epoch_ns
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(9.0):
                    async for msg in sub.messages:
                        payload = bytes(msg.payload)  # type: ignore[arg-type]
                        if msg.topic.matches("hilgw/e2e/tracks"):
                            batches.append(track_pb2.TrackBatch.FromString(payload))
                        elif msg.topic.matches("hilgw/e2e/reports/+"):
                            reports.append(report_pb2.SensorReportBatch.FromString(payload))
                        else:
                            health.append(health_pb2.DeviceHealth.FromString(payload))
            stats = gw.stats["radar-fwd"]
            assert stats.frames_in > 10
            assert stats.reports_out > 10
            assert sum(stats.drops.values()) == 0, dict(stats.drops)

    assert batches, "no TrackBatch arrived on hilgw/e2e/tracks"
    seqs = [b.batch_sequence for b in batches]
    assert seqs == sorted(seqs)
    assert any(h.device_id == "radar-fwd" and h.state == health_pb2.DEVICE_STATE_UP for h in health)

    # The reports on MQTT carry what the wire said: the radar's own sequence
    # numbers (increasing, as sent) and its angle rates with their sigmas.
    rows = [r for b in reports for r in b.reports]
    assert len(rows) > 10
    wire_seq = [r.sequence for r in rows]
    assert all(q > 0 for q in wire_seq)
    assert wire_seq == sorted(wire_seq)
    assert all(r.polar.angular_rates_valid for r in rows)
    assert any(r.polar.azimuth_rate_radps != 0.0 for r in rows)
    assert all(r.polar.sigma_azimuth_rate_radps > 0.0 for r in rows)

    checked = 0
    for b in batches:
        for t in b.tracks:
            if t.status != track_pb2.TRACK_STATUS_CONFIRMED:
                continue
            assert t.contributors
            assert t.contributors[0].sensor_id == "radar-fwd"
            s = t.state
            x = np.array([s.x, s.y, s.z])
            P = np.array(s.covariance).reshape(6, 6)[:3, :3]
            t_s = (t.last_update_time_ns - epoch_ns) * 1e-9
            _, truth, active = truth_at(scenario, t_s)
            d = truth[active, :3] - x
            d2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(P), d)
            # The nearest truth target explains this track within its covariance.
            assert d2.min() < CHI2_3DOF, (t.track_id, float(d2.min()), float(np.sqrt(np.trace(P))))
            checked += 1
    assert checked >= 5, f"only {checked} confirmed track states to check"

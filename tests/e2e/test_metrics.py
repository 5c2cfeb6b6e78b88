"""Prometheus /metrics and /healthz over real HTTP on 127.0.0.1: per-device
counters, drops by reason, decode errors, queue depths, the frame-to-track
latency histogram and the authority state; each gateway its own registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE
from drivers.serial_radar import SerialRadarCodec
from gateway.config import parse_config
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from hilgw.v1 import health_pb2
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def config(link: str, gateway_id: str) -> dict[str, object]:
    return {
        "gateway_id": gateway_id,
        "mqtt": {"enabled": False},
        "fusion": {"publish_hz": 20.0},
        "health_interval_s": 0.1,
        "devices": [
            {
                "id": "radar-1",
                "protocol": "serial_radar",
                "wire_sensor_id": 7,
                "transport": {"kind": "memory", "name": link},
                "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
            }
        ],
        "metrics": {"port": 0},
    }


def one_report(t_ns: int) -> np.ndarray:
    arr = np.zeros(1, TRACK_BATCH_DTYPE)
    arr["sensor_track_id"] = 11
    arr["sensor_time_ns"] = t_ns
    arr["range_m"] = 50_000.0
    arr["azimuth_rad"] = 0.5
    arr["elevation_rad"] = 0.1
    arr["sigma_range_m"] = 10.0
    arr["sigma_azimuth_rad"] = 1e-3
    arr["sigma_elevation_rad"] = 1e-3
    arr["sigma_range_rate_mps"] = 1.0
    arr["quality"] = 0.9
    return arr


@pytest.fixture
def links(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    names = (f"m1-{request.node.name}", f"m2-{request.node.name}")
    yield names
    for n in names:
        memory_registry.forget(n)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_and_healthz(links: tuple[str, str]) -> None:
    # Two gateways in one process: each registry holds only its own gateway.
    async with (
        Gateway(parse_config(config(links[0], "gw-a"))) as gw,
        Gateway(parse_config(config(links[1], "gw-b"))) as other,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{gw.endpoints['metrics'].port}"
        assert gw.endpoints["metrics"].host == "127.0.0.1"
        assert other.endpoints["metrics"].port != gw.endpoints["metrics"].port

        # Before any frame: no device up, so not healthy, and it says why.
        status, ctype, body = await get(http, base + "/healthz")
        assert status == 503
        assert ctype.startswith("application/json")
        assert "no device is up" in body

        _, dev_end = memory_registry.link(links[0])
        await dev_end.open()
        device = SerialRadarCodec(Role.DEVICE, sensor_id=7)
        for _ in range(5):
            wire = device.encode_track_batch(one_report(time.time_ns()))
            await dev_end.write(wire)
            await dev_end.write(wire[:-3] + b"\x55\x55\x00")  # a frame with a broken CRC
            await asyncio.sleep(0.06)
        st = gw.stats["radar-1"]
        await eventually(
            lambda: st.frames_in == 10 and st.state == health_pb2.DEVICE_STATE_UP, what="10 frames in"
        )
        # The engine steps in its own process: until it has taken the 5 reports in.
        await eventually(lambda: gw.fusion.engine_counters().get("reports_in") == 5, what="5 reports fused")

        status, _, body = await get(http, base + "/healthz")
        assert status == 200, body
        status, ctype, text = await get(http, base + "/metrics")
        assert status == 200
        assert ctype.startswith("text/plain")
        m = samples(text)
        dev = (("device", "radar-1"),)
        assert m[("hilgw_device_frames_total", dev)] == st.frames_in == 10
        assert m[("hilgw_device_bytes_total", dev)] == st.bytes_in > 0
        assert m[("hilgw_device_reports_total", dev)] == 5
        reasons = {dict(k[1])["reason"]: v for k, v in m.items() if k[0] == "hilgw_device_drops_total"}
        assert reasons == dict(st.drops)
        assert sum(reasons.values()) == 5
        assert m[("hilgw_device_decode_errors_total", dev)] == 5
        assert m[("hilgw_device_state", (("device", "radar-1"), ("state", "UP")))] == 1
        assert ("hilgw_queue_depth", (("subscriber", "fusion"), ("topic", "reports"))) in m
        assert ("hilgw_queue_drops_total", (("subscriber", "metrics"), ("topic", "tracks"))) in m
        assert m[("hilgw_authority", (("state", "HOLD"),))] == 1
        # What fusion did with the 5 reports it took in (engine counters).
        fates = {dict(k[1])["fate"]: v for k, v in m.items() if k[0] == "hilgw_fusion_reports_total"}
        counters = gw.fusion.engine_counters()  # the stepping engine's (a worker process by default)
        assert fates["received"] == counters["reports_in"] == 5
        assert fates["dropped_late"] == counters["late_dropped"] == 0
        # Each report has one terminal fate or is held (issue 14: out_of_sequence was counted as one).
        held = m[("hilgw_fusion_reports_held", ())]
        terminal = ("plot", "sensor_track", "started_track", "not_used", "dropped_late")
        assert set(fates) == {"received", *terminal}
        assert fates["received"] == sum(fates[f] for f in terminal) + held
        assert ("hilgw_fusion_reports_out_of_sequence_total", ()) in m
        # Every report batch reached a published picture; its latency is at
        # least nothing and at most a few step periods.
        n = m[("hilgw_frame_to_track_seconds_count", dev)]
        total = m[("hilgw_frame_to_track_seconds_sum", dev)]
        assert n == 5
        assert 0 < total / n < 0.5
        assert m[("hilgw_frame_to_track_unmatched_total", ())] == 0
        assert m[("hilgw_healthy", ())] == 1
        # Gateway-added latency by stage (issue 18): one observation per batch on the bus.
        bus = (("stage", "bus"),)
        assert m[("hilgw_stage_seconds_count", bus)] == 5
        assert 0 < m[("hilgw_stage_seconds_sum", bus)] / 5 < 0.5

        # The other gateway's registry has its own (untouched) device.
        _, _, other_text = await get(http, f"http://127.0.0.1:{other.endpoints['metrics'].port}/metrics")
        om = samples(other_text)
        assert om[("hilgw_device_frames_total", dev)] == 0
        assert not any(k[0] == "hilgw_frame_to_track_seconds_count" for k in om)
        assert om[("hilgw_stage_seconds_count", (("stage", "bus"),))] == 0

        status, _, _ = await get(http, base + "/nothing-here")
        assert status == 404

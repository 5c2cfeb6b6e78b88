"""The supervisor with in-memory transports: data flows to the track picture,
a failing device task is restarted with back-off and shows it in health, and
shutdown is prompt."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from drivers.base import Role
from drivers.radar import TRACK_BATCH_DTYPE, SensorState, Status
from drivers.serial_radar import SerialRadarCodec
from gateway.config import parse_config
from gateway.supervisor import Gateway
from gateway.transports import memory_registry
from hilgw.v1 import health_pb2, track_pb2
from tests.waiting import eventually


def radar_config(link: str, **extra: object) -> dict[str, object]:
    return {
        "gateway_id": "test-gw",
        "mqtt": {"enabled": False},
        "fusion": {"publish_hz": 20.0},
        "health_interval_s": 0.05,
        "devices": [
            {
                "id": "radar-1",
                "protocol": "serial_radar",
                "wire_sensor_id": 7,
                "transport": {"kind": "memory", "name": link},
                "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
                "restart": {"initial_s": 0.05, "max_s": 0.2},
                **extra,
            }
        ],
    }


def reports(n: int, t_ns: int, track_id: int = 11) -> np.ndarray:
    arr = np.zeros(n, TRACK_BATCH_DTYPE)
    arr["sensor_track_id"] = track_id
    arr["sensor_time_ns"] = t_ns
    arr["range_m"] = 50_000.0
    arr["azimuth_rad"] = 0.5
    arr["elevation_rad"] = 0.1
    arr["sigma_range_m"] = 10.0
    arr["sigma_azimuth_rad"] = 1e-3
    arr["sigma_elevation_rad"] = 1e-3
    arr["sigma_range_rate_mps"] = 1.0
    arr["sigma_azimuth_rate_radps"] = 1e-4
    arr["sigma_elevation_rate_radps"] = 1e-4
    arr["quality"] = 0.9
    arr["rates_valid"] = True
    return arr


@pytest.fixture
def link(request: pytest.FixtureRequest) -> str:
    name = request.node.name
    yield name
    memory_registry.forget(name)


async def test_reports_become_tracks_and_bad_frames_are_counted(link: str) -> None:
    cfg = parse_config(radar_config(link))
    device = SerialRadarCodec(Role.DEVICE, sensor_id=7)
    async with Gateway(cfg) as gw:
        tracks = gw.tracks.subscribe("test")
        _, dev_end = memory_registry.link(link)
        await dev_end.open()
        for _ in range(4):
            now = time.time_ns()
            await dev_end.write(device.encode_track_batch(reports(1, now)))
            await dev_end.write(b"\x01\x02\x03\x00")  # garbage frame between good ones
            await asyncio.sleep(0.06)
        st = gw.stats["radar-1"]
        await eventually(lambda: st.reports_out == 4)
        assert sum(st.drops.values()) == 4
        assert st.state == health_pb2.DEVICE_STATE_UP

        def confirmed() -> bool:
            for b in tracks.get_all():
                if any(t.status == track_pb2.TRACK_STATUS_CONFIRMED for t in b.tracks):
                    return True
            return False

        await eventually(confirmed)
        assert gw.fusion.last_picture is not None
        assert len(gw.fusion.last_picture) == 1


async def test_failed_device_is_restarted_and_health_shows_it(link: str) -> None:
    cfg = parse_config(radar_config(link))
    async with Gateway(cfg) as gw:
        _, dev_end = memory_registry.link(link)
        await dev_end.open()
        st = gw.stats["radar-1"]
        device = SerialRadarCodec(Role.DEVICE, sensor_id=7)
        status = Status(
            sensor_time_ns=time.time_ns(), state=SensorState.OK, time_sync_locked=True,
            radiating=True, track_count=0, uptime_s=1,
        )  # fmt: skip
        await dev_end.write(device.send(status))
        await eventually(lambda: st.state == health_pb2.DEVICE_STATE_UP)
        await dev_end.close()  # the device end goes away: the driver's read fails
        await eventually(lambda: st.restarts >= 1)
        assert st.state in (health_pb2.DEVICE_STATE_RESTARTING, health_pb2.DEVICE_STATE_STARTING)
        assert "peer closed" in st.last_error
        health = gw.health.subscribe("test")
        await eventually(lambda: len(health) > 0)
        msg = health.get_all()[-1]
        assert msg.device_id == "radar-1"
        assert msg.counters.restarts >= 1


async def test_silent_device_goes_down(link: str) -> None:
    cfg = parse_config(radar_config(link, heartbeat_timeout_s=0.2))
    async with Gateway(cfg) as gw:
        _, dev_end = memory_registry.link(link)
        await dev_end.open()
        device = SerialRadarCodec(Role.DEVICE, sensor_id=7)
        await dev_end.write(device.encode_track_batch(reports(1, time.time_ns())))
        st = gw.stats["radar-1"]
        await eventually(lambda: st.state == health_pb2.DEVICE_STATE_UP)
        await eventually(lambda: st.state == health_pb2.DEVICE_STATE_DOWN)
        assert "no frame" in st.detail


async def test_stale_reports_are_dropped_and_counted(link: str) -> None:
    cfg = parse_config(radar_config(link, max_report_age_s=1.0))
    async with Gateway(cfg) as gw:
        _, dev_end = memory_registry.link(link)
        await dev_end.open()
        device = SerialRadarCodec(Role.DEVICE, sensor_id=7)
        now = time.time_ns()
        batch = np.concatenate([reports(2, now - 30 * 10**9), reports(3, now)])
        await dev_end.write(device.encode_track_batch(batch))
        st = gw.stats["radar-1"]
        await eventually(lambda: st.reports_out == 3)
        assert st.drops["stale"] == 2


async def test_shutdown_is_prompt(link: str) -> None:
    cfg = parse_config(radar_config(link))
    gw = Gateway(cfg)
    await gw.__aenter__()
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await gw.__aexit__(None, None, None)
    assert time.monotonic() - t0 < 2.0
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith(("device:", "fusion")))


async def test_the_start_up_heap_is_frozen_for_the_gc_while_running(link: str) -> None:
    """What start-up built is out of the cyclic GC's reach while the gateway runs
    (full passes over it paused the loop 35-50 ms, issue 18) and back at stop."""
    import gc

    assert gc.get_freeze_count() == 0
    async with Gateway(parse_config(radar_config(link))):
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


async def test_sequence_gaps_are_counted(link: str) -> None:
    cfg = parse_config(radar_config(link))
    async with Gateway(cfg) as gw:
        _, dev_end = memory_registry.link(link)
        await dev_end.open()
        device = SerialRadarCodec(Role.DEVICE, sensor_id=7)
        now = time.time_ns()
        await dev_end.write(device.encode_track_batch(reports(2, now)))  # seq 0, 1
        device.encode_track_batch(reports(3, now))  # seq 2..4 lost on the line
        await dev_end.write(device.encode_track_batch(reports(1, now)))  # seq 5
        st = gw.stats["radar-1"]
        await eventually(lambda: st.reports_out == 3)
        assert st.drops["sequence_gap"] == 3


async def test_a_crash_looping_task_is_counted_unhealthy_and_its_back_off_resets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.fusion_stage import FusionStage
    from gateway.metrics import GatewayMetrics, health_check

    calls = [0]

    async def flaky(self: FusionStage) -> None:
        calls[0] += 1
        if calls[0] == 5:
            await asyncio.sleep(0.4)  # a healthy run (longer than healthy_run_s) ...
        if calls[0] <= 5:
            raise ValueError(f"boom {calls[0]}")  # ... that still ends in a failure
        await asyncio.Event().wait()  # then it stays up

    monkeypatch.setattr(FusionStage, "run", flaky)
    cfg = parse_config(
        {
            "gateway_id": "gw",
            "mqtt": {"enabled": False},
            "supervisor": {
                "restart_initial_s": 0.01,
                "restart_max_s": 0.04,
                "healthy_run_s": 0.3,
                "max_restarts": 3,
                "restart_window_s": 60.0,
            },
        }
    )
    async with Gateway(cfg) as gw:
        await eventually(lambda: gw.task_health.restarts["fusion"] >= 3, what="3 restarts of fusion")
        ok, body = health_check(gw)
        assert not ok  # restarted, so alive, but crash-looping: not healthy
        assert any("fusion restarted 3x" in r and "boom" in r for r in body["reasons"])
        await eventually(lambda: calls[0] >= 6, what="a sixth run of fusion")
        # Doubling to the cap, then back to the start after the healthy run.
        assert list(gw.task_health.delays["fusion"]) == [0.01, 0.02, 0.04, 0.04, 0.01]
        text = GatewayMetrics(gw).exposition().decode()
        assert 'hilgw_task_restarts_total{task="fusion"} 5.0' in text


def test_queued_report_batches_go_out_as_one_message_per_device_and_are_timed(link: str) -> None:
    """The MQTT feed sends what queued since its last wake as one SensorReportBatch per
    device (each report keeps its receive time), and the stage clock times the batches
    from their receipt (hilgw_stage_seconds, issue 18)."""
    from gateway.devices.base import ReportsIn
    from gateway.normalise import normalise_polar
    from gateway.outputs.session import MqttSession
    from hilgw.geo import site_geometry
    from hilgw.v1 import report_pb2

    cfg = parse_config({**radar_config(link), "mqtt": {"enabled": True}})
    gw = Gateway(cfg)
    gw.mqtt = MqttSession(cfg.mqtt, cfg.gateway_id)  # not run: messages stay queued
    geom = site_geometry("radar-1", 54.0, 10.0, 20.0)
    idx = gw.fusion.engine.add_sensor(geom)
    seen: list[tuple[str, int, int]] = []
    gw.stages.listeners.append(lambda stage, rx, now, n: seen.append((stage, rx, n)))
    now = time.time_ns()
    a, b, c = reports(3, now), reports(2, now, track_id=12), reports(1, now, track_id=13)
    batches = [
        ReportsIn("radar-1", now - 3_000_000, normalise_polar(geom, idx, a), source=a),
        ReportsIn("radar-2", now - 2_000_000, normalise_polar(geom, idx, c), source=c),
        ReportsIn("radar-1", now - 1_000_000, normalise_polar(geom, idx, b), source=b),
    ]
    for r in batches:
        gw.reports.publish(r)
    gw._forward([], [], batches)

    queued = [msg for _, msg in gw.mqtt._bulk]
    assert [m.topic.rsplit("/", 1)[-1] for m in queued] == ["radar-1", "radar-2"]
    one = report_pb2.SensorReportBatch.FromString(queued[0].payload)
    assert [r.sensor_track_id for r in one.reports] == [11, 11, 11, 12, 12]
    assert [r.receive_time_ns for r in one.reports] == [now - 3_000_000] * 3 + [now - 1_000_000] * 2
    assert [r.sequence for r in one.reports] == a["sequence"].tolist() + b["sequence"].tolist()
    assert one.batch_sequence == 1
    assert queued[0].receive_time_ns == now - 3_000_000  # the oldest: the message's worst latency
    assert [(s, rx) for s, rx, _ in seen if s == "bus"] == [("bus", r.receive_time_ns) for r in batches]
    assert ("encoded", now - 3_000_000, 5) in seen
    bus = gw.stages.histogram.labels("bus")._sum.get()
    assert 0.006 <= bus < 60.0  # 3 + 2 + 1 ms at least, from receipt

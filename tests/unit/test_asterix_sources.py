"""Many radars on one ASTERIX stream (issue 22), in process: SAC/SIC -> site,
unknown sources counted and never placed, per-source sequence and health, a
capture crossing midnight UTC replayed on its own clock, and any device whose
every input is rejected DEGRADED, not STARTING."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest

from drivers.asterix import AsterixCodec, ServiceMessage065
from drivers.asterix.timeofday import DAY_NS
from drivers.base import Role
from gateway.config import parse_config
from gateway.devices.base import ReportsIn
from gateway.health import ALL_REJECTED, DeviceStats
from gateway.replay_pcap import replay_capture
from gateway.scoring import tracks_from_proto
from gateway.supervisor import Gateway
from hilgw.v1 import health_pb2, track_pb2
from sim_devices.frigate_emulator import Counters, encode_scan
from sim_devices.frigate_model import FrigateModel
from sim_devices.scenario import load_scenario
from sim_devices.truth import truth_at
from tests.e2e import multi_radar_bench as mb

SCN = load_scenario(mb.SCENARIO)
PORT = 47001


def _scans(epoch_ns: int, seconds: float, radars: tuple[str, ...] = mb.RADARS) -> list[tuple[int, bytes]]:
    """(send time ns, datagram) of the emulator's radars, in time order."""
    codec = AsterixCodec(Role.DEVICE)
    out: list[tuple[int, bytes]] = []
    for r in radars:
        m = FrigateModel(SCN, r, epoch_ns)
        hz = m.sensor.update_hz
        for k in range(int(seconds * hz)):
            events, _ = m.scan(k / hz)
            t = epoch_ns + round((k / hz + m.sensor.latency_s) * 1e9)
            out += [(t, dg) for dg in encode_scan(codec, events, Counters())]
    return sorted(out, key=lambda p: p[0])


def _device(sources: list[dict[str, Any]]) -> dict[str, Any]:
    dev = mb.one_stream_device(PORT)
    dev["transport"] = {"kind": "udp", "bind_port": PORT}
    dev["sources"] = sources
    return dev


def _gateway(devices: list[dict[str, Any]]) -> Gateway:
    cfg = mb.gateway_config(devices)
    cfg.pop("metrics")
    return Gateway(parse_config(cfg))


def test_each_source_at_its_site_and_unknown_sources_counted_never_placed() -> None:
    only_r1 = [s for s in mb.one_stream_device(PORT)["sources"] if s["name"] in ("r1", "r1-sdps")]
    gw = _gateway([_device(only_r1)])
    stats = gw.stats["net"] = DeviceStats("net", "asterix", "udp")
    drv: Any = gw._make_driver(gw.config.devices[0], stats)
    epoch = 1_800_000_000_000_000_000
    out: list[ReportsIn] = []
    for t, dg in _scans(epoch, 3.0):
        out += drv.handle_datagram(dg, t)
    # r2 (30.3, SDPS 30.4) and r3 (31.5, 31.6) are not configured: counted by id, not placed.
    assert set(stats.unknown_sources) == {"30.3", "30.4", "31.5", "31.6"}
    assert stats.drops["unknown_source"] == sum(stats.unknown_sources.values()) > 0
    names = {drv.sensor_names[int(i)] for r in out for i in np.unique(r.reports.sensor)}
    assert names == {"net/cat048/30.1", "net/cat062/30.2"}
    # r1's plots are where the targets are, seen from r1's site.
    for r in out:
        _, x, active = truth_at(SCN, (int(r.reports.t_ns[0]) - epoch) * 1e-9)
        d = np.linalg.norm(r.reports.x[:, None, :3] - x[None, active, :3], axis=2).min(axis=1)
        assert float(d.max()) < 1500.0
    src = stats.sources["r1"]
    assert src.records_in > 0
    assert src.reports_out == src.records_in
    assert src.out_of_sequence == 0
    assert src.rotation_s == pytest.approx(0.25)


def test_source_health_from_service_messages_and_rejects() -> None:
    gw = _gateway([_device(mb.one_stream_device(PORT)["sources"])])
    stats = gw.stats["net"] = DeviceStats("net", "asterix", "udp")
    drv: Any = gw._make_driver(gw.config.devices[0], stats)
    clock = [100.0]
    drv.ctx.mono = lambda: clock[0]
    epoch = 1_800_000_000_000_000_000
    scans = _scans(epoch, 2.0)
    stats.set_state(health_pb2.DEVICE_STATE_UP, "receiving")
    for t, dg in scans:
        drv.handle_datagram(dg, t)
    assert stats.check is not None
    stats.check(100.0)
    assert {s.state for s in stats.sources.values()} == {health_pb2.DEVICE_STATE_UP}
    # r3 falls silent: after its timeout (3 s, the heartbeat) it is DOWN and the device DEGRADED with why.
    clock[0] = 104.0
    for t, dg in _scans(epoch + 2 * 10**9, 1.0, ("r1", "r2")):
        drv.handle_datagram(dg, t + 2 * 10**9)
    stats.check(104.0)
    assert stats.sources["r3"].state == health_pb2.DEVICE_STATE_DOWN
    assert "no service message" in stats.sources["r3"].detail
    assert stats.sources["r1"].state == health_pb2.DEVICE_STATE_UP
    assert stats.state == health_pb2.DEVICE_STATE_DEGRADED
    assert "r3 DOWN: no service message" in stats.detail
    # An SDPS that says NOGO (I065/040) is DEGRADED, with the reason.
    nogo = AsterixCodec(Role.DEVICE).send(ServiceMessage065(30, 4, 1, 1, epoch + 3 * 10**9, nogo=2))
    drv.handle_datagram(nogo, epoch + 3 * 10**9)
    stats.check(104.5)
    assert stats.sources["r2-sdps"].state == health_pb2.DEVICE_STATE_DEGRADED
    assert "NOGO" in stats.sources["r2-sdps"].detail
    # r1's reports all stale (a clock off by a minute): DEGRADED with the reason.
    clock[0] = 107.0
    for t, dg in _scans(epoch + 4 * 10**9, 1.0, ("r1",)):
        drv.handle_datagram(dg, t + 60 * 10**9)
    stats.check(107.0)
    assert stats.sources["r1"].state == health_pb2.DEVICE_STATE_DEGRADED
    assert "all records rejected (stale" in stats.sources["r1"].detail


def _pcapng(path: Path, packets: list[tuple[int, bytes]], port: int) -> None:
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f)
        for t, payload in packets:
            udp = dpkt.udp.UDP(sport=40000, dport=port, data=payload)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(
                src=b"\x7f\x00\x00\x01", dst=b"\x7f\x00\x00\x01", p=dpkt.ip.IP_PROTO_UDP, data=udp
            )
            ip.len = len(ip)
            eth = dpkt.ethernet.Ethernet(
                src=b"\0" * 6, dst=b"\0" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip
            )
            w.writepkt(bytes(eth), ts=t / 1e9)


def test_capture_across_midnight_replays_on_its_clock(tmp_path: Path) -> None:
    # A capture from another day that crosses 00:00 UTC: 4 s before, 4 s after.
    midnight = (1_700_000_000_000_000_000 // DAY_NS + 1) * DAY_NS
    epoch = midnight - 4 * 10**9
    cap = tmp_path / "midnight.pcapng"
    packets = _scans(epoch, 8.0)
    _pcapng(cap, packets, PORT)
    cfg = mb.gateway_config([_device(mb.one_stream_device(PORT)["sources"])])
    cfg.pop("metrics")
    res = replay_capture([cap], parse_config(cfg))
    assert res.packets == len(packets)
    assert res.decoded["net"] == len(packets)
    assert res.replay is not None
    st = res.replay.stats["net"]
    assert "stale" not in st.drops, st.drops  # fresh when captured: fresh in replay
    assert sum(s.out_of_sequence for s in st.sources.values()) == 0
    confirmed_after = 0
    prev = None
    for b in res.steps:
        _, status, _, t_upd = tracks_from_proto(b)
        if t_upd.size:
            # Track times stay with the step time: no day (86 400 s) jump at midnight.
            assert float(np.max(np.abs(t_upd - b.time_ns))) < 2e9
            if prev is not None:
                assert b.time_ns - prev < 1e9
            prev = b.time_ns
        if b.time_ns > midnight + 10**9:
            confirmed_after += int(np.count_nonzero(status == track_pb2.TRACK_STATUS_CONFIRMED))
    assert confirmed_after > 0


async def test_a_feed_of_only_malformed_datagrams_is_degraded_with_the_reason() -> None:
    import socket

    from gateway.metrics import health_check

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = parse_config(
        {
            "gateway_id": "dirty",
            "mqtt": {"enabled": False},
            "health_interval_s": 0.5,
            "devices": [
                {"id": "feed", "protocol": "asterix", "transport": {"kind": "udp", "bind_port": port}}
            ],
        }
    )
    import asyncio
    import time

    # CAT048 blocks whose one record is cut short, and one with an undefined FSPEC bit pattern.
    junk = [bytes([48, 0, 6, 0xFF, 0xFF, 0xFF]), bytes([48, 0, 5, 0x80, 0x01]), bytes([62, 0, 4, 0xFE])]
    async with Gateway(cfg) as gw:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            t0 = time.monotonic()
            st = gw.stats["feed"]
            while time.monotonic() - t0 < 5.0 and not st.detail.startswith(ALL_REJECTED):
                tx.sendto(junk[int((time.monotonic() - t0) * 10) % 3], ("127.0.0.1", port))
                await asyncio.sleep(0.1)
        assert st.state == health_pb2.DEVICE_STATE_DEGRADED, (st.state, st.detail)
        assert st.detail.startswith(ALL_REJECTED), st.detail
        assert st.rejected_in > 0
        _, body = health_check(gw)
        assert body["devices"]["feed"] == "DEGRADED"
        assert body["details"]["feed"].startswith(ALL_REJECTED)
        msg = st.to_proto()
        assert msg.state == health_pb2.DEVICE_STATE_DEGRADED
        assert msg.detail.startswith(ALL_REJECTED)


def test_doctor_and_summary_name_the_sources_seen() -> None:
    import socket
    import threading

    from gateway.console import summary_line
    from gateway.doctor import Result
    from gateway.doctor_asterix import check_asterix_sources

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    only_r1 = [s for s in mb.one_stream_device(PORT)["sources"] if s["name"] in ("r1", "r1-sdps")]
    dev = _device(only_r1)
    dev["transport"] = {"kind": "udp", "bind_port": port}
    gw = _gateway([dev])
    scans = _scans(1_800_000_000_000_000_000, 1.0)

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(10):  # until the doctor listens (bounded)
                for _, dg in scans:
                    tx.sendto(dg, ("127.0.0.1", port))
                threading.Event().wait(0.1)

    th = threading.Thread(target=send)
    th.start()
    check = check_asterix_sources(gw.config.devices[0], listen_s=1.0)
    th.join()
    assert check.result is Result.WARN
    assert "r1 (30.1 CAT034/CAT048)" in check.detail
    assert "not configured: 30.3 CAT034/CAT048, 30.4 CAT062, 31.5 CAT034/CAT048, 31.6 CAT062" in check.detail
    # The summary line: the configured sources with their state, the unknown ids seen.
    stats = gw.stats["net"] = DeviceStats("net", "asterix", "udp")
    drv: Any = gw._make_driver(gw.config.devices[0], stats)
    for t, dg in scans:
        drv.handle_datagram(dg, t)
    line = summary_line(gw, {})
    assert "[r1=STARTING r1-sdps=STARTING unknown=30.3,30.4,31.5,31.6]" in line


def test_hilgw_replay_reads_a_pcapng_with_a_config(tmp_path: Path) -> None:
    import subprocess
    import sys

    cap = tmp_path / "two.pcapng"
    packets = _scans(1_800_000_000_000_000_000, 2.0, ("r1",))
    _pcapng(cap, [*packets, (packets[-1][0] + 1, b"\x30\x00\x05\x80\x01")], PORT)  # and one malformed
    (tmp_path / "site.toml").write_text(
        'gateway_id = "lab"\n[mqtt]\nenabled = false\n'
        f'[[devices]]\nid = "net"\nprotocol = "asterix"\ntransport = {{ kind = "udp", bind_port = {PORT} }}\n'
        '[[devices.sources]]\nsac = 30\nsic = 1\nname = "r1"\n'
        "site = { lat_deg = 45.0, lon_deg = -30.0, alt_m = 20.0 }\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "replay",
            "--config",
            str(tmp_path / "site.toml"),
            str(cap),
            "--max-speed",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = " ".join(proc.stderr.split())
    assert (
        f"{len(packets) + 1} packets: decoded net: {len(packets)}; rejected net truncated: 1; unmapped none"
        in out
    ), out
    assert "unknown sources 30.2" in out  # r1's SDPS is not named in this config
    # Without --config a capture is refused with the reason.
    bad = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "replay", str(cap)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert "needs --config" in bad.stderr


def test_a_source_s_markings_reach_its_fusion_sensors() -> None:
    from gateway.wiring.partners import source_markings

    sources = mb.one_stream_device(PORT)["sources"]
    sources[0] = {**sources[0], "markings": {"classification": "SECRET", "releasable_to": ["ally"]}}
    gw = _gateway([_device(sources)])
    marks = source_markings(gw.config.devices, [])
    assert set(marks) == {"net/cat048/30.1", "net/cat062/30.1"}
    assert marks["net/cat048/30.1"] == marks["net/cat062/30.1"]
    # The stage's lookup by sensor name finds it; another radar of the stream has none.
    gw.fusion.markings = marks
    got = gw.fusion._markings_by_sensor(["net/cat048/30.1", "net/cat048/30.3"])
    assert got[0] is not None
    assert got[1] is None


def test_input_verdict_needs_a_whole_window_of_junk() -> None:
    from gateway.health import INPUT_WINDOW_S

    st = DeviceStats("d", "serial_radar", "serial")
    t = 1000.0
    assert st.input_verdict(t) is None  # nothing yet
    verdicts = []
    # A good frame every 1 s, junk every 0.1 s in between: never "rejected".
    for k in range(60):
        t += 0.1
        st.frames_in += 1
        if k % 10:
            st.reject("crc")
        verdicts.append(st.input_verdict(t))
    assert "rejected" not in verdicts
    # Junk only: "rejected" once a whole window holds nothing else, and it stays so.
    first = None
    for _ in range(40):
        t += 0.1
        st.frames_in += 1
        st.reject("crc")
        if st.input_verdict(t) == "rejected" and first is None:
            first = t
        elif first is not None:
            assert st.input_verdict(t) == "rejected"
    assert first is not None
    assert first - (t - 4.0) <= 2 * INPUT_WINDOW_S + 1e-9
    # One good frame: "accepted" at once.
    st.frames_in += 1
    assert st.input_verdict(t + 0.05) == "accepted"

"""The radar emulator as a real process, on a real pty and on loopback TCP.

Bytes are read raw from the transport and decoded with the gateway side of the
same codec; decoded measurements are checked against the scenario's truth.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from drivers.base import Rejected, Role
from drivers.radar import Status, TrackReportBatch
from drivers.serial_radar import SerialRadarCodec
from hilgw.geo import angle_diff
from sim_devices.process import start_emulator
from sim_devices.scenario import load_scenario
from sim_devices.sensor_model import SensorModel
from sim_devices.truth import truth_at
from tests.waiting import WAIT_S

pytestmark = pytest.mark.e2e

HZ = 5.0
OFFSET_S = 0.25
DRIFT_PPM = 40.0
LATENCY_S = 0.03

SCENARIO = f"""
[scenario]
name = "e2e"
seed = 3

[[sites]]
id = "s"
lat_deg = 45.0
lon_deg = 10.0
alt_m = 20.0

[[sensors]]
id = "r"
site = "s"
wire_id = 42
update_hz = {HZ}
range_max_m = 150000.0
elevation_min_deg = -1.0
sigma_range_m = 10.0
sigma_angle_mrad = 1.5
sigma_range_rate_mps = 0.8
sigma_angle_rate_mradps = 0.4
detection_probability = 1.0
clutter_rate = 0.0
latency_s = {LATENCY_S}
clock_offset_s = {OFFSET_S}
clock_drift_ppm = {DRIFT_PPM}

[[sensors]]
id = "noisy"
site = "s"
update_hz = 50.0
range_max_m = 150000.0
sigma_range_m = 10.0
sigma_angle_mrad = 1.5
sigma_range_rate_mps = 0.8
clutter_rate = 40.0
clutter_lifetime_scans = 3
latency_s = 0.0

[[targets]]
id = "a"
kind = "air"
speed_mps = 250.0
waypoints = [
  {{ lat_deg = 45.6, lon_deg = 10.0, alt_m = 8000.0 }},
  {{ lat_deg = 44.4, lon_deg = 10.3, alt_m = 8000.0 }},
]

[[targets]]
id = "b"
kind = "air"
speed_mps = 180.0
waypoints = [
  {{ lat_deg = 44.7, lon_deg = 9.2, alt_m = 3000.0 }},
  {{ lat_deg = 45.2, lon_deg = 10.9, alt_m = 4000.0 }},
]

[[targets]]
id = "c"
kind = "ballistic"
launch_lat_deg = 46.5
launch_lon_deg = 10.5
impact_lat_deg = 45.1
impact_lon_deg = 10.1
launch_time_s = 60.0
flight_time_s = 200.0
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    p = tmp_path / "e2e.toml"
    p.write_text(SCENARIO, encoding="utf-8")
    return p


def read_for(read: Callable[[], bytes | None], fd: int, seconds: float) -> list[tuple[int, bytes]]:
    """(receive time ns, chunk) pairs read from ``fd`` for ``seconds``."""
    chunks = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        r, _, _ = select.select([fd], [], [], min(left, 0.1))
        if r:
            data = read()
            if not data:
                break
            chunks.append((time.time_ns(), data))
    return chunks


def decode(
    chunks: list[tuple[int, bytes]], wire_id: int
) -> tuple[list[tuple[int, np.ndarray]], list[Status]]:
    gw = SerialRadarCodec(Role.GATEWAY, sensor_id=wire_id)
    batches, statuses = [], []
    for t_ns, data in chunks:
        gw.receive_data(data)
        for ev in gw.drain():
            assert not isinstance(ev, Rejected), ev
            if isinstance(ev, TrackReportBatch):
                batches.append((t_ns, ev.reports))
            elif isinstance(ev, Status):
                statuses.append(ev)
    return batches, statuses


def check_against_truth(scenario_file: Path, epoch_ns: int, batches: list[tuple[int, np.ndarray]]) -> int:
    """Every report within 5σ of truth; scans on the sensor's grid; returns the number of scans."""
    scn = load_scenario(scenario_file)
    model = SensorModel(scn, "r", epoch_ns=epoch_ns)
    rows = np.concatenate([r for _, r in batches])
    # Invert the sensor clock: sensor = epoch + (t + offset + drift·t).
    t = ((rows["sensor_time_ns"] - epoch_ns) / 1e9 - OFFSET_S) / (1.0 + DRIFT_PPM * 1e-6)
    scans = np.unique(np.round(t * HZ))
    assert np.abs(t * HZ - np.round(t * HZ)).max() < 1e-6  # on the k / update_hz grid
    assert np.all(np.diff(scans) == 1)  # no scan missing
    # Latency: each batch arrives after its measurement time plus the configured delay.
    for recv_ns, r in batches:
        tr = ((r["sensor_time_ns"].max() - epoch_ns) / 1e9 - OFFSET_S) / (1 + DRIFT_PPM * 1e-6)
        delay = (recv_ns - epoch_ns) / 1e9 - tr
        assert LATENCY_S - 0.005 <= delay < LATENCY_S + 0.5
    worst = 0.0
    for ti in np.unique(t):
        sel = rows[t == ti]
        _, x, active = truth_at(scn, ti)
        truth = model.polar(x[active])
        truth = truth[model.coverage(x[active], truth)]
        assert len(sel) == len(truth)  # Pd = 1, no clutter: one report per covered target
        for r in sel:
            z = np.array(
                [
                    (r["range_m"] - truth[:, 0]) / r["sigma_range_m"],
                    angle_diff(r["azimuth_rad"], truth[:, 1]) / r["sigma_azimuth_rad"],
                    (r["elevation_rad"] - truth[:, 2]) / r["sigma_elevation_rad"],
                    (r["range_rate_mps"] - truth[:, 3]) / r["sigma_range_rate_mps"],
                    (r["azimuth_rate_radps"] - truth[:, 4]) / r["sigma_azimuth_rate_radps"],
                    (r["elevation_rate_radps"] - truth[:, 5]) / r["sigma_elevation_rate_radps"],
                ]
            )
            best = np.abs(z).max(axis=0).min()  # the target it is about
            worst = max(worst, float(best))
    assert worst < 5.0
    return len(scans)


def test_pty_reports_at_rate_and_match_truth(scenario_file: Path) -> None:
    epoch = time.time_ns() - 100 * 10**9  # scenario already at t = 100 s: all three targets up
    with start_emulator(
        ["--scenario", str(scenario_file), "--sensor", "r", "--pty", "--epoch-ns", str(epoch)]
    ) as emu:
        assert emu.ready["transport"] == "pty"
        assert emu.ready["epoch_ns"] == epoch
        assert emu.ready["wire_id"] == 42
        fd = os.open(emu.ready["path"], os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        with contextlib.suppress(BlockingIOError):
            os.read(fd, 1 << 16)  # whatever queued before we looked
        try:
            chunks = read_for(lambda: os.read(fd, 4096), fd, 2.0)
        finally:
            os.close(fd)
        batches, statuses = decode(chunks, 42)
        n_scans = check_against_truth(scenario_file, epoch, batches)
        assert n_scans >= 2.0 * HZ - 2
        assert 1 <= len(statuses) <= 3
        assert all(s.sensor_id == 42 for s in statuses)
        assert statuses[-1].track_count == 3  # Pd = 1, three targets in coverage, no clutter
        emu.popen.send_signal(signal.SIGINT)
        assert emu.popen.wait(WAIT_S) == 0  # a clean exit on SIGINT
        emu.stop()
        assert emu.final is not None
        assert emu.final["event"] == "stopped"
        assert emu.final["bytes_dropped"] == 0


def test_tcp_serves_one_client_at_a_time_and_accepts_reconnects(scenario_file: Path) -> None:
    epoch = time.time_ns() - 100 * 10**9
    with start_emulator(
        ["--scenario", str(scenario_file), "--sensor", "r", "--tcp", "127.0.0.1:0", "--epoch-ns", str(epoch)]
    ) as emu:
        assert emu.ready["host"] == "127.0.0.1"
        port = int(emu.ready["port"])
        assert port > 0
        assert emu.serial_url == f"socket://127.0.0.1:{port}"
        c1 = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            batches, _statuses = decode(read_for(lambda: c1.recv(4096), c1.fileno(), 1.2), 42)
            assert check_against_truth(scenario_file, epoch, batches) >= 4
            # A second client takes over; the first one is closed.
            c2 = socket.create_connection(("127.0.0.1", port), timeout=2)
            try:
                rest = read_for(lambda: c1.recv(4096), c1.fileno(), 1.0)
                assert sum(len(d) for _, d in rest) < 2000  # at most what was in flight, then EOF
                assert c1.recv(4096) == b""
                batches2, _ = decode(read_for(lambda: c2.recv(4096), c2.fileno(), 0.8), 42)
                assert len(batches2) >= 2
            finally:
                c2.close()
        finally:
            c1.close()
        # Reconnect after the client went away.
        time.sleep(0.1)
        c3 = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            batches3, _ = decode(read_for(lambda: c3.recv(4096), c3.fileno(), 0.8), 42)
            assert len(batches3) >= 2
        finally:
            c3.close()
        assert emu.stop(timeout_s=WAIT_S) == 0  # SIGTERM: a clean exit, not SIGKILL's -9
        assert emu.final is not None
        assert emu.final["connections"] == 3


def test_unread_pty_drops_instead_of_blocking(scenario_file: Path) -> None:
    with start_emulator(["--scenario", str(scenario_file), "--sensor", "noisy", "--pty"]) as emu:
        time.sleep(1.5)  # nobody reads: the pty buffer fills
        fd = os.open(emu.ready["path"], os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            chunks = read_for(lambda: os.read(fd, 1 << 16), fd, 0.3)
        finally:
            os.close(fd)
        # What we read now is fresh (the stale backlog was flushed), give or take one buffer.
        gw = SerialRadarCodec(Role.GATEWAY)
        for _, d in chunks:
            gw.receive_data(d)
        times = [
            int(r["sensor_time_ns"])
            for ev in gw.drain()
            if isinstance(ev, TrackReportBatch)
            for r in ev.reports
        ]
        assert times
        assert (time.time_ns() - min(times)) / 1e9 < 1.2
        assert emu.stop(timeout_s=WAIT_S) == 0  # SIGTERM: a clean exit, not SIGKILL's -9
        assert emu.final is not None
        assert emu.final["bytes_dropped"] > 0
        assert emu.final["scans_skipped"] == 0


def test_bad_arguments_fail_fast(scenario_file: Path) -> None:
    from hilgw.errors import TransportError

    with pytest.raises(TransportError, match="no sensor 'nope'"):
        start_emulator(["--scenario", str(scenario_file), "--sensor", "nope", "--pty"])


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_an_emulator_stops_when_the_process_that_started_it_is_killed(scenario_file: Path) -> None:
    # A gateway (or `hilgw emulate`) that is SIGKILLed cannot stop its emulators:
    # they must notice on their own (hilgw.process.stop_with_parent).
    code = (
        "import sys, time\n"
        "from hilgw.process import start_emulator\n"
        "emu = start_emulator(['--scenario', sys.argv[1], '--sensor', 'noisy', '--pty'])\n"
        "print(emu.popen.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(scenario_file)], stdout=subprocess.PIPE, text=True, env=env
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + WAIT_S
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the emulator outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)

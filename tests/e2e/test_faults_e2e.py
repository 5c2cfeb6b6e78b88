"""End to end: a scenario's fault timeline, applied by the serial radar emulator
process, shows in what the gateway reports, and the gateway recovers after each.

Serial radar (pty, and TCP for the unplug): garbage -> counted drops
(framing/crc/...), bad CRC -> "crc" drops, dropout and silent heartbeat -> DOWN
then UP, unplug -> RESTARTING (restarts counted) then UP. Frigate (UDP):
garbage -> "truncated" drops, dropout -> DOWN then UP, clock step -> "stale" drops.
(The byte-level effects of every kind are in tests/unit/test_faults.py.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.supervisor import Gateway
from hilgw.v1 import health_pb2
from sim_devices.emulate_all import start_sensor_emulator
from sim_devices.scenario import load_scenario
from tests.waiting import up_before, with_lead

pytestmark = pytest.mark.e2e

UP, DOWN, RESTARTING = (
    health_pb2.DEVICE_STATE_UP,
    health_pb2.DEVICE_STATE_DOWN,
    health_pb2.DEVICE_STATE_RESTARTING,
)
BAD_FRAME = ("framing", "crc", "truncated", "too_long")

# One radar and no target in its coverage, no clutter: only STATUS frames at
# 1 Hz flow, so every change the faults make is plain to see.
SCENARIO = """
[scenario]
name = "faults"
seed = 1

[[sites]]
id = "s"
lat_deg = 45.0
lon_deg = -30.0
alt_m = 10.0

[[sensors]]
id = "radar"
site = "s"
update_hz = 2.0
range_max_m = 1000.0
sigma_range_m = 10.0
sigma_angle_mrad = 1.0
sigma_range_rate_mps = 1.0
clutter_rate = 0.0

[[faults]]
device = "radar"
kind = "garbage"
start_s = 0.5
duration_s = 2.5
garbage_bytes = 40

[[faults]]
device = "radar"
kind = "bad_crc"
start_s = 3.2
duration_s = 2.2

[[faults]]
device = "radar"
kind = "dropout"
start_s = 5.6
duration_s = 3.2

[[faults]]
device = "radar"
kind = "silent_heartbeat"
start_s = 10.0
duration_s = 3.2

[[faults]]
device = "radar"
kind = "serial_unplug"
start_s = 14.4
duration_s = 2.0
"""

#: Scenario second the pty run ends (after the unplug's recovery).
END_S = 18.5


@pytest.mark.parametrize("transport", ["pty", "tcp"])
async def test_fault_timeline_visible_and_recovered(tmp_path: Path, transport: str) -> None:
    path = tmp_path / "faults.toml"
    text = SCENARIO
    if transport == "tcp":  # the TCP run checks the unplug only: keep it short
        text = text.split("[[faults]]")[0] + "[[faults]]" + text.split("[[faults]]")[-1]
        text = text.replace("start_s = 14.4", "start_s = 1.5")
    path.write_text(text)
    scenario = load_scenario(path)
    end_s = END_S if transport == "pty" else 5.0

    async def run(epoch: int) -> tuple[list[tuple[float, int, dict[str, int], int]], dict[str, Any]]:
        emu = start_sensor_emulator(str(path), scenario, "radar", epoch_ns=epoch, transport=transport)
        cfg = parse_config(
            {
                "gateway_id": "e2e-faults",
                "health_interval_s": 0.1,
                "mqtt": {"enabled": False},
                "devices": [
                    {
                        "id": "radar",
                        "protocol": "serial_radar",
                        "transport": {"kind": "serial", "url": emu.serial_url},
                        "site": {"lat_deg": 45.0, "lon_deg": -30.0, "alt_m": 10.0},
                        "heartbeat_timeout_s": 1.6,
                        "restart": {"initial_s": 0.2, "max_s": 0.5},
                    }
                ],
            }
        )
        seen: list[tuple[float, int, dict[str, int], int]] = []
        try:
            async with Gateway(cfg) as gw:
                up_before(epoch, "radar emulator and gateway")  # before the first fault
                st = gw.stats["radar"]
                while (t := (time.time_ns() - epoch) / 1e9) < end_s:
                    seen.append((t, st.state, dict(st.drops), st.restarts))
                    await asyncio.sleep(0.05)  # a sample period, not a wait
        finally:
            emu.stop()
        assert emu.final is not None
        return seen, emu.final

    # Scenario t = 0 a moment from now: emulator and gateway are up before the first fault.
    seen, final = await with_lead(run, 1.5)

    def states(t0: float, t1: float) -> set[int]:
        return {s for t, s, _, _ in seen if t0 <= t < t1}

    def state_at(t_s: float) -> int:
        return [s for t, s, _, _ in seen if t < t_s][-1]

    def drops_at(t_s: float) -> dict[str, int]:
        return next((d for t, _, d, _ in seen if t >= t_s), seen[-1][2])

    _last_t, last_state, last_drops, restarts = seen[-1]
    # Unplug: the line goes away -> RESTARTING, counted restarts, then UP again.
    u0 = 14.4 if transport == "pty" else 1.5
    assert RESTARTING in states(u0, u0 + 2.5), seen
    assert restarts >= 1
    assert last_state == UP, seen[-5:]
    assert final["fault_unplugs"] == 1
    if transport == "tcp":
        return
    # UP with the first frames after t = 0 (how soon is the loaded machine's business:
    # the gateway was up before t = 0) ...
    t_up = next(t for t, s, _, _ in seen if t >= 0.0 and s == UP)
    assert t_up < 2.0, seen[:40]
    # ... and the garbage (0.5 s to 3 s), junk frames between good ones, is counted as
    # bad frames while the device stays UP.
    junk = sum(drops_at(3.1).get(r, 0) for r in BAD_FRAME)
    assert junk >= 2, drops_at(3.1)
    assert final["fault_garbage_frames"] >= junk - drops_at(3.1).get("crc", 0)
    assert states(max(0.5, t_up), 3.0) == {UP}
    # Bad CRC: exactly "crc" drops, one per corrupted frame.
    crc = drops_at(5.5).get("crc", 0) - drops_at(3.1).get("crc", 0)
    assert crc >= 2, (drops_at(3.1), drops_at(5.5))
    assert crc == final["fault_crc_corrupted"]
    # Dropout: nothing arrives -> DOWN within the heartbeat timeout, UP once it ends.
    assert DOWN in states(7.4, 8.8)
    assert state_at(10.0) == UP  # the next STATUS (1 Hz) after the dropout brought it back
    # Silent heartbeat (no track to keep the line alive): DOWN, then UP.
    assert DOWN in states(11.8, 13.2)
    assert state_at(14.4) == UP
    # The frames lost to bad CRCs and to the dropout show as sequence gaps too
    # (ICD §6.2); nothing else was dropped.
    assert last_drops.get("sequence_gap", 0) >= crc + 3, last_drops
    assert set(last_drops) <= {*BAD_FRAME, "sequence_gap"}, last_drops


FRIGATE_DATA = Path(__file__).resolve().parent.parent / "data" / "frigate.toml"
FRIGATE_FAULTS = """
[[faults]]
device = "ew-radar"
kind = "garbage"
start_s = 0.5
duration_s = 1.5

[[faults]]
device = "ew-radar"
kind = "dropout"
start_s = 2.5
duration_s = 3.0

[[faults]]
device = "ew-radar"
kind = "clock_step"
start_s = 6.0
duration_s = 1.5
step_s = -30.0
"""


async def test_frigate_faults_visible_and_recovered(tmp_path: Path) -> None:
    path = tmp_path / "frigate-faults.toml"
    path.write_text(FRIGATE_DATA.read_text() + FRIGATE_FAULTS)
    scenario = load_scenario(path)

    async def run(epoch: int) -> tuple[list[tuple[float, int, dict[str, int]]], dict[str, Any]]:
        emu = start_sensor_emulator(str(path), scenario, "ew-radar", epoch_ns=epoch)
        cfg = parse_config(
            {
                "gateway_id": "e2e-frigate-faults",
                "health_interval_s": 0.1,
                "mqtt": {"enabled": False},
                "devices": [
                    {
                        "id": "nav",
                        "protocol": "nmea",
                        "transport": {"kind": "udp", "bind_port": emu.ready["nmea"][1]},
                        "heartbeat_timeout_s": 1.5,
                    },
                    {
                        "id": "frigate",
                        "protocol": "asterix",
                        "transport": {"kind": "udp", "bind_port": emu.ready["asterix"][1]},
                        "ownship": {"source": "nav", "lever_arm_m": [0.0, 0.0, 30.0]},
                        "asterix": {"azimuth_reference": "deck"},
                        "heartbeat_timeout_s": 1.5,
                    },
                ],
            }
        )
        seen: list[tuple[float, int, dict[str, int]]] = []
        try:
            async with Gateway(cfg) as gw:
                # Its ports bound before the first fault (UDP to a closed port is lost).
                up_before(epoch, "the gateway", margin_s=0.1)
                st = gw.stats["frigate"]
                while (t := (time.time_ns() - epoch) / 1e9) < 8.3:
                    seen.append((t, st.state, dict(st.drops)))
                    await asyncio.sleep(0.05)  # a sample period, not a wait
        finally:
            emu.stop()
        assert emu.final is not None
        return seen, emu.final

    seen, final = await with_lead(run, 3.0)

    def drops_at(t_s: float) -> dict[str, int]:
        return next((d for t, _, d in seen if t >= t_s), seen[-1][2])

    before = [d for t, _, d in seen if t < 0.5][-1]
    junk = drops_at(2.4).get("truncated", 0) - before.get("truncated", 0)
    # Every junk datagram is rejected and counted (a random header claims more bytes than it has).
    assert junk == final["fault_garbage_datagrams"] >= 4, (before, drops_at(2.4), final)
    assert DOWN in {s for t, s, _ in seen if 4.2 <= t < 5.5}
    assert [s for t, s, _ in seen if t < 6.0][-1] == UP
    assert final["fault_datagrams_withheld"] > 0
    stale = drops_at(8.2).get("stale", 0) - drops_at(5.9).get("stale", 0)
    assert stale > 0, (drops_at(5.9), drops_at(8.2))

"""A scenario's CAN radar across processes, through a bus-off and back.

``python -m gateway.cli emulate --scenario FILE --only radar-can`` (``hilgw
emulate``) starts the CAN radar emulator of a crafted scenario on its
configured bus, python-can ``udp_multicast`` on a 239.0.0.0/8 group, with a
``can_bus_off`` fault on its timeline; a gateway (:class:`gateway.supervisor.Gateway`)
reads that bus with a ``can_radar`` device. Its DeviceHealth shows reports,
then the bus-off (counted ``can_bus_off`` / ``can_error_frame``, DEGRADED then
DOWN while the bus is off, a restart), then the recovery (UP, reports again).

Multicast only inside a network namespace this test creates (``unshare -n``;
loopback up, multicast routed to it), never on the machine's real interfaces;
skipped with the reason where that is not possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hilgw.v1 import health_pb2
from tests.can_support import SENSOR, fault, scenario_toml
from tests.netns import REPO, emit_result, run_in_netns
from tests.waiting import READY_S, WAIT_S, eventually, up_before, with_lead

pytestmark = pytest.mark.e2e

GROUP = "239.74.163.7"
UP, DEGRADED, DOWN, RESTARTING = (
    health_pb2.DEVICE_STATE_UP,
    health_pb2.DEVICE_STATE_DEGRADED,
    health_pb2.DEVICE_STATE_DOWN,
    health_pb2.DEVICE_STATE_RESTARTING,
)
#: Scenario seconds: the bus is off for [BUS_OFF_S, BUS_OFF_S + BUS_OFF_FOR_S); the run ends at END_S.
BUS_OFF_S, BUS_OFF_FOR_S, END_S = 3.0, 3.0, 8.5
#: Wall seconds from now to scenario t = 0: both processes of `hilgw emulate` start meanwhile.
LEAD_S = 4.0

SCENARIO = scenario_toml(
    GROUP,
    fault("can_bus_off", BUS_OFF_S, BUS_OFF_FOR_S),
    interface="udp_multicast",
    update_hz=5.0,
)


async def _read_json(stream: asyncio.StreamReader, until: str, within_s: float) -> list[dict[str, Any]]:
    """JSON lines from ``stream`` up to and including the first whose event is ``until``."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(within_s):
        while True:
            line = await stream.readline()
            if not line:
                raise EOFError(f"stream ended before a {until!r} line: {out}")
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                out.append(obj)
                if obj.get("event") == until:
                    return out


async def _netns_main(scenario_path: str) -> dict[str, Any]:
    """Runs inside the namespace: `hilgw emulate` as a child process, the gateway here."""
    return await with_lead(lambda epoch: _emulate_run(scenario_path, epoch), LEAD_S)


async def _emulate_run(scenario_path: str, epoch: int) -> dict[str, Any]:
    from gateway.config import parse_config
    from gateway.supervisor import Gateway

    cfg = parse_config(
        {
            "gateway_id": "e2e-can-bus-off",
            "health_interval_s": 0.1,
            "mqtt": {"enabled": False},
            "devices": [
                {
                    "id": SENSOR,
                    "protocol": "can_radar",
                    "transport": {
                        "kind": "can",
                        "interface": "udp_multicast",
                        "channel": GROUP,
                        "poll_s": 0.02,
                    },
                    "site": {"lat_deg": 52.0, "lon_deg": 4.0, "alt_m": 10.0},
                    "heartbeat_timeout_s": 1.5,
                    "restart": {"initial_s": 0.2, "max_s": 0.5},
                }
            ],
        }
    )
    seen: list[tuple[float, int, dict[str, int], int, int]] = []
    async with Gateway(cfg) as gw:
        emu = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "emulate", "--scenario", scenario_path,
            "--only", SENSOR, "--epoch-ns", str(epoch),
            stdout=asyncio.subprocess.PIPE, cwd=str(REPO),
        )  # fmt: skip
        assert emu.stdout is not None
        try:
            started = await _read_json(emu.stdout, "ready", READY_S)
            up_before(epoch, "hilgw emulate and the gateway")
            st = gw.stats[SENSOR]
            while (t := (time.time_ns() - epoch) / 1e9) < END_S:
                seen.append((t, st.state, dict(st.drops), st.restarts, st.reports_out))
                await asyncio.sleep(0.05)  # a sample period, not a wait
        finally:
            if emu.returncode is None:
                emu.send_signal(signal.SIGTERM)
            stopped = await _read_json(emu.stdout, "stopped", WAIT_S)
            await asyncio.wait_for(emu.wait(), WAIT_S)
    return {"started": started, "stopped": stopped[-1], "seen": seen, "rc": emu.returncode}


async def _bench_main(scenario_path: str) -> dict[str, Any]:
    """Runs inside the namespace: a gateway in bench mode ([emulation]) with the scenario's CAN radar."""
    from gateway.config import CanTransportConfig, parse_config
    from gateway.supervisor import Gateway

    cfg = parse_config(
        {
            "gateway_id": "e2e-can-bench",
            "health_interval_s": 0.1,
            "mqtt": {"enabled": False},
            "emulation": {"scenario": scenario_path, "only": [SENSOR]},
        }
    )
    async with Gateway(cfg) as gw:
        dev = next(d for d in gw.devices if d.id == SENSOR)
        assert isinstance(dev.transport, CanTransportConfig)
        st = gw.stats[SENSOR]
        # The result, whatever it is, goes back to the test outside the namespace, which judges it.
        with contextlib.suppress(pytest.fail.Exception):
            await eventually(lambda: st.state == UP and st.reports_out >= 10)
        return {
            "protocol": dev.protocol,
            "transport": [dev.transport.interface, dev.transport.channel, dev.transport.fd],
            "wire_sensor_id": dev.wire_sensor_id,
            "state": st.state,
            "reports_out": st.reports_out,
            "drops": dict(st.drops),
        }


def netns_body(scenario_path: str, mode: str = "emulate") -> None:
    main = _netns_main if mode == "emulate" else _bench_main
    emit_result(asyncio.run(main(scenario_path)))


def _in_netns(tmp_path: Path, mode: str, scenario: str = SCENARIO) -> dict[str, Any]:
    path = tmp_path / "can-radar.toml"
    path.write_text(scenario)
    code = (
        f"from tests.e2e.test_can_radar_scenario_netns import netns_body; netns_body({str(path)!r}, {mode!r})"
    )
    return run_in_netns(code, timeout_s=240)  # a bound: with_lead may run it again


def test_bench_mode_reads_the_scenario_can_radar(tmp_path: Path) -> None:
    res = _in_netns(tmp_path, "bench", SCENARIO.split("[[faults]]")[0])  # no fault: reports only
    assert res["protocol"] == "can_radar"
    assert res["transport"] == ["udp_multicast", GROUP, False]
    assert res["wire_sensor_id"] == 1
    assert res["state"] == UP, res
    assert res["reports_out"] >= 10, res
    assert set(res["drops"]) <= {"incomplete"}, res  # a report cut by the bus opening, at most


def test_scenario_can_radar_bus_off_seen_by_the_gateway(tmp_path: Path) -> None:
    res = _in_netns(tmp_path, "emulate")
    seen = [tuple(s) for s in res["seen"]]

    # `hilgw emulate --only` started the CAN radar on the scenario's bus.
    device = next(ev for ev in res["started"] if ev.get("event") == "device")
    assert (device["device"], device["kind"]) == (SENSOR, "can_radar")
    ready = device["ready"]
    assert (ready["interface"], ready["channel"], ready["fd"]) == ("udp_multicast", GROUP, False)
    assert res["started"][-1]["devices"] == [SENSOR]

    def last_before(t_s: float) -> tuple[Any, ...]:
        return [s for s in seen if s[0] < t_s][-1]

    # Reports before the bus-off.
    _, state, drops, restarts, reports = last_before(BUS_OFF_S)
    assert state == UP
    assert reports > 0
    assert restarts == 0
    assert "can_bus_off" not in drops
    # While the bus is off: the error frame is counted, the device is DEGRADED, then DOWN.
    back_s = BUS_OFF_S + BUS_OFF_FOR_S
    off = {s[1] for s in seen if BUS_OFF_S + 0.2 <= s[0] < back_s}
    assert off <= {DEGRADED, RESTARTING, DOWN}, off
    assert DEGRADED in off, off
    assert DOWN in off, off  # no frame for heartbeat_timeout_s
    quiet = [s[4] for s in seen if BUS_OFF_S + 0.2 <= s[0] < back_s]
    assert quiet[0] == quiet[-1], "reports arrived while the bus was off"
    # Recovery: UP again, reports flow, one restart, the bus-off counted once.
    _, state, drops, restarts, reports = seen[-1]
    assert state == UP, seen[-3:]
    assert reports > quiet[-1]
    assert restarts == 1
    assert drops.get("can_bus_off") == 1, drops
    assert drops.get("can_error_frame") == 1, drops
    # What the emulator says it did.
    assert res["rc"] == 0
    counters = res["stopped"]["devices"][SENSOR]
    assert counters is not None
    assert counters["fault_bus_offs"] == 1
    assert counters["fault_error_frames"] == 1
    assert counters["fault_bus_off_withheld"] > 0

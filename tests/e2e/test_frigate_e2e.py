"""End to end: the frigate emulator process -> ASTERIX + NMEA over UDP on 127.0.0.1
-> the gateway's asterix and nmea drivers -> ECEF reports checked against the
scenario's truth (the ship sails, rolls and pitches; the radar reports in its
deck frame)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest

from gateway.config import parse_config
from gateway.devices.base import ReportsIn
from gateway.supervisor import Gateway
from hilgw.v1 import health_pb2
from sim_devices.frigate_emulator import start_frigate_emulator
from sim_devices.scenario import load_scenario
from sim_devices.truth import truth_at

pytestmark = pytest.mark.e2e
SCENARIO = Path(__file__).resolve().parent.parent / "data" / "frigate.toml"
CHI2_3DOF = 30.7  # 3 dof at 1 - 1e-6


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_frigate_feed_reaches_fusion_and_matches_truth() -> None:
    ast_port, nmea_port = free_udp_port(), free_udp_port()
    cfg = parse_config(
        {
            "gateway_id": "e2e-frigate",
            "mqtt": {"enabled": False},
            "devices": [
                {"id": "nav", "protocol": "nmea", "transport": {"kind": "udp", "bind_port": nmea_port}},
                {
                    "id": "frigate",
                    "protocol": "asterix",
                    "transport": {"kind": "udp", "bind_port": ast_port},
                    "ownship": {"source": "nav", "lever_arm_m": [0.0, 0.0, 30.0]},
                    "asterix": {
                        "azimuth_reference": "deck",
                        "sigma_range_m": 30.0,
                        "sigma_azimuth_mrad": 1.5,
                        "sigma_height_m": 150.0,
                        "sigma_ground_speed_mps": 3.0,
                    },
                },
            ],
        }
    )
    scenario = load_scenario(SCENARIO)
    async with Gateway(cfg) as gw:
        sub = gw.reports.subscribe("test", maxsize=10_000)
        emu = start_frigate_emulator(
            [
                "--scenario",
                str(SCENARIO),
                "--asterix",
                f"127.0.0.1:{ast_port}",
                "--nmea",
                f"127.0.0.1:{nmea_port}",
                "--speed",
                "1",
            ]
        )
        try:
            epoch = int(emu.ready["epoch_ns"])
            await asyncio.sleep(4.0)
        finally:
            emu.stop()
        got: list[ReportsIn] = sub.get_all()
        st, nav = gw.stats["frigate"], gw.stats["nav"]
        names = gw.fusion.sensor_ids
    assert emu.final is not None
    assert emu.final["send_errors"] == 0
    # Both drivers ran clean: nothing rejected, nothing stale, own ship known.
    assert nav.reports_out > 0
    assert not nav.drops, nav.drops
    assert st.reports_out > 0, (st.drops, st.last_error)
    assert set(st.drops) <= {"ownship_stale"}, st.drops  # the first scan may precede the first GGA
    assert st.state in (health_pb2.DEVICE_STATE_UP,), st.detail
    assert st.detail.startswith("SDPS 25.11") or st.detail.startswith("radar 25.10"), st.detail
    assert "frigate/cat048/25.10" in names
    assert "frigate/cat062/25.11" in names

    # Every report of a real target sits within its covariance of the truth.
    n_checked = {48: 0, 62: 0}
    for batch in got:
        r = batch.reports
        for i in range(len(r)):
            cat = 48 if "cat048" in names[int(r.sensor[i])] else 62
            t_s = (int(r.t_ns[i]) - epoch) / 1e9
            _, x, active = truth_at(scenario, t_s)
            d = x[active, :3] - r.x[i, :3]
            d2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(r.P[i, :3, :3]), d)
            if d2.min() < CHI2_3DOF:
                n_checked[cat] += 1
            else:  # clutter (false tracks) only comes from the radar, far from every target
                assert cat == 48, (cat, d2.min())
                assert np.linalg.norm(d, axis=1).min() > 1000.0, d2.min()
    assert n_checked[48] >= 6, n_checked
    assert n_checked[62] >= 6, n_checked

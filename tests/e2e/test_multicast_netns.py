"""Multicast, only inside a private network namespace this test creates (``unshare -n``):
the frigate emulator sends ASTERIX to a group, the gateway's UdpTransport joins it
and the asterix driver decodes it. Never touches the real interfaces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent.parent
SCENARIO = ROOT / "tests" / "data" / "frigate.toml"
GROUP, PORT = "239.255.86.1", 8600

CHILD = textwrap.dedent(
    f"""
    import asyncio, json, subprocess, sys
    subprocess.run("ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo",
                   shell=True, check=True)
    from gateway.bus import Topic
    from gateway.config import parse_config
    from gateway.devices.asterix import AsterixDriver
    from gateway.devices.base import DriverContext
    from gateway.health import DeviceStats
    from gateway.transports import create_transport
    from sim_devices.frigate_emulator import start_frigate_emulator

    async def main():
        cfg = parse_config({{"devices": [{{"id": "frigate", "protocol": "asterix",
            "transport": {{"kind": "udp", "bind_port": {PORT}, "group": "{GROUP}", "interface": "127.0.0.1"}},
            "ownship": {{"lat_deg": 45.0, "lon_deg": -30.0}}}}]}}).devices[0]
        stats = DeviceStats("frigate", "asterix", "udp")
        drv = AsterixDriver(cfg, DriverContext("gw", Topic("r"), Topic("raw"), stats), ownship=None,
                            add_sensor=lambda g: 0)
        tr = create_transport(cfg.transport)
        await tr.open()
        emu = start_frigate_emulator(["--scenario", "{SCENARIO}", "--asterix", "{GROUP}:{PORT}",
                                      "--multicast-if", "127.0.0.1"])
        n = 0
        try:
            for _ in range(3):
                data, _ = await asyncio.wait_for(tr.recv(), 20.0)
                drv.handle_datagram(data, __import__("time").time_ns())
                n += 1
        finally:
            emu.stop()
            await tr.close()
        print(json.dumps({{"datagrams": n, "frames_in": stats.frames_in, "drops": dict(stats.drops)}}))

    asyncio.run(main())
    """
)


def _netns_usable() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip not installed"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if r.returncode != 0:
        return f"cannot create a network namespace here: {r.stderr.decode().strip()}"
    return None


@pytest.mark.skipif(_netns_usable() is not None, reason=str(_netns_usable()))
def test_asterix_over_multicast_in_a_private_namespace() -> None:
    r = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["datagrams"] == 3
    assert out["frames_in"] >= 3
    # No own ship for CAT048 in this driver: counted, not lost silently; nothing rejected.
    assert set(out["drops"]) <= {"no_ownship"}, out

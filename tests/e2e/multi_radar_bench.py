"""The multi-radar bench of issue 22, shared by its tests.

Three shore radars (tests/data/multi_radar.toml) go out twice, with the same
``--epoch-ns`` (so the same scans, noise and track numbers): once as ONE
ASTERIX stream (one emulator process, ``--sensor`` x3) to a multicast group,
once as three streams (three processes) to three unicast ports. dumpcap
captures all of it to a pcapng; a live gateway listens to the one stream
with ``[[devices.sources]]``. :func:`live_capture` runs inside the test's
own network namespace (tests/netns.py), so multicast and dumpcap touch no
real interface.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from sim_devices.scenario import Scenario, load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "data" / "multi_radar.toml"
RADARS = ("r1", "r2", "r3")
GROUP = "239.0.22.1"
#: Live run length (s). Long enough for every radar to confirm every target.
RUN_S = 7.0


def site(scn: Scenario, sensor_id: str) -> dict[str, float]:
    """The radar antenna of a shore sensor: the first waypoint of its ship, antenna height up."""
    ship = scn.ship(scn.sensor(sensor_id).ship or "")
    w = ship.waypoints[0]
    return {"lat_deg": w.lat_deg, "lon_deg": w.lon_deg, "alt_m": ship.antenna_height_m}


def _asterix_block(scn: Scenario, sensor_id: str) -> dict[str, Any]:
    s = scn.sensor(sensor_id)
    return {
        "sigma_range_m": s.sigma_range_m,
        "sigma_azimuth_mrad": s.sigma_angle_mrad,
        "sigma_height_m": s.sigma_height_m,
    }


def one_stream_device(port: int) -> dict[str, Any]:
    """The three radars (and their SDPS, SIC + 1) as sources of one multicast device."""
    scn = load_scenario(SCENARIO)
    sources: list[dict[str, Any]] = []
    for r in RADARS:
        s = scn.sensor(r)
        blk = _asterix_block(scn, r)
        sources.append(
            {
                "sac": s.sac,
                "sic": s.sic,
                "name": r,
                "site": site(scn, r),
                "sigma_range_m": blk["sigma_range_m"],
                "sigma_azimuth_mrad": blk["sigma_azimuth_mrad"],
                "sigma_height_m": blk["sigma_height_m"],
            }
        )
        # Its SDPS: CAT062 WGS-84 tracks need no site.
        sources.append({"sac": s.sac, "sic": s.sic + 1, "name": f"{r}-sdps"})
    return {
        "id": "net",
        "protocol": "asterix",
        "transport": {"kind": "udp", "bind_port": port, "group": GROUP, "interface": "127.0.0.1"},
        "sources": sources,
    }


def three_devices(ports: list[int]) -> list[dict[str, Any]]:
    """The same radars as today's one-radar-per-device config (fixed own ship = the site)."""
    scn = load_scenario(SCENARIO)
    return [
        {
            "id": r,
            "protocol": "asterix",
            "transport": {"kind": "udp", "bind_port": p},
            "ownship": site(scn, r),
            "asterix": _asterix_block(scn, r),
        }
        for r, p in zip(RADARS, ports, strict=True)
    ]


def gateway_config(devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "gateway_id": "multi-radar",
        "mqtt": {"enabled": False},
        "metrics": {"port": 0},
        "devices": devices,
    }


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _live(ports: list[int], tmp: Path) -> dict[str, Any]:
    from gateway.config import parse_config
    from gateway.supervisor import Gateway
    from sim_devices.frigate_emulator import start_frigate_emulator

    raw = gateway_config([one_stream_device(ports[0])])
    raw["recording"] = {"path": str(tmp / "multi.mcap")}  # the same traffic as hilgw records it
    cfg = parse_config(raw)
    files: list[str] = []
    emus = []
    reports: list[tuple[str, list[list[float]]]] = []
    try:
        async with Gateway(cfg) as gw:
            tracks = gw.tracks.subscribe("bench", maxsize=10_000)
            rep = gw.reports.subscribe("bench", maxsize=100_000)
            sensors = [a for r in RADARS for a in ("--sensor", r)]
            split = ",".join(f"127.0.0.1:{p}" for p in ports[1:])
            args = [
                "--scenario",
                str(SCENARIO),
                *sensors,
                "--asterix",
                f"{GROUP}:{ports[0]}",
                "--split-asterix",
                split,
            ]
            # One process sends both the one stream and the per-radar streams: the
            # same bytes. Started off the loop: a loaded machine takes seconds to import.
            emus.append(await asyncio.to_thread(start_frigate_emulator, args, 120.0))
            epoch = int(emus[0].ready["epoch_ns"])
            await asyncio.sleep(RUN_S)
            # What the gateway says while the radars still send (stopping a process takes a while).
            assert gw.metrics is not None
            metrics = gw.metrics.exposition().decode()
            st = gw.stats["net"]
            health = {
                "state": int(st.state),
                "detail": st.detail,
                "drops": dict(st.drops),
                "sources": {
                    n: [int(s.state), s.detail, s.records_in, s.rotation_s] for n, s in st.sources.items()
                },
                "unknown": dict(st.unknown_sources),
            }
            await asyncio.to_thread(emus[0].stop)
            await asyncio.sleep(0.5)
            live = tracks.get_all()
            names = gw.fusion.sensor_ids
            for b in rep.get_all():
                r = b.reports
                for k in range(len(r.t_ns)):
                    reports.append((names[int(r.sensor[k])], [int(r.t_ns[k]), *map(float, r.x[k, :3])]))
            assert gw.recorder is not None
            recorder = gw.recorder
        files = [str(f) for f in recorder.files]
    finally:
        for e in emus:
            e.stop()
    return {
        "mcap": files,
        "ports": ports,
        "epoch_ns": epoch,
        "live": [b.SerializeToString().hex() for b in live],
        "reports": reports,
        "metrics": [ln for ln in metrics.splitlines() if ln.startswith("hilgw_source_")],
        "health": health,
    }


def live_capture(tmp: str) -> None:
    """Netns body: dumpcap on lo, the bench, its RESULT line (tests/netns.py)."""
    from tests.netns import emit_result

    ports = [_free_udp_port() for _ in range(4)]
    cap = Path(tmp) / "multi.pcapng"
    filt = "udp and (" + " or ".join(f"dst port {p}" for p in ports) + ")"
    dumpcap = subprocess.Popen(
        [shutil.which("dumpcap") or "dumpcap", "-q", "-i", "lo", "-f", filt, "-w", str(cap)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (cap.exists() and cap.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.05)  # dumpcap writes the section header once it captures
        time.sleep(0.3)
        res = asyncio.run(_live(ports, Path(tmp)))
    finally:
        time.sleep(1.0)  # dumpcap writes what the kernel buffered on its next poll
        dumpcap.send_signal(signal.SIGINT)
        dumpcap.wait(10)
    emit_result({**res, "capture": str(cap)})


def truth_positions(t_ns: int, epoch_ns: int) -> np.ndarray:
    """ECEF positions (N, 3) of the scenario's active targets at ``t_ns``."""
    from sim_devices.truth import truth_at

    _, x, active = truth_at(load_scenario(SCENARIO), (t_ns - epoch_ns) * 1e-9)
    return np.asarray(x[active, :3])


def confirmed_positions(batch: Any) -> np.ndarray:
    """ECEF positions (K, 3) of the confirmed tracks of a TrackBatch (message or hex)."""
    from gateway.scoring import tracks_from_proto
    from hilgw.v1 import track_pb2

    if isinstance(batch, str):
        batch = track_pb2.TrackBatch.FromString(bytes.fromhex(batch))
    _, status, x, _ = tracks_from_proto(batch)
    return np.asarray(x[status == track_pb2.TRACK_STATUS_CONFIRMED, :3])


def json_dump(obj: Any) -> str:
    return json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o))


__all__ = ["live_capture", "math"]

"""Two CAN radars and a launcher on python-can ``udp_multicast``: each device hears its own bus only.

Issue 14: a classic CAN radar on group A and a CAN FD radar on group B were
one bus. python-can binds every ``udp_multicast`` bus to the wildcard address
of one port, so each socket received both groups; ``fd`` left to the
interface's default (FD) let the classic radar take FD frames too; and the
codec decoded both formats whatever its setting. Both radars' reports then
carried the same tracks, and a launcher on the bus wrote a WARNING line for
every frame that was not its own.

Here, in a private network namespace (tests/netns.py), one gateway runs
``radar-can`` (classic, group A), ``radar-canfd`` (FD, group B) and
``launcher`` (FD, group A, beside the classic radar). The test itself plays
the devices: classic reports with track ids 100.. on A, FD reports with
track ids 200.. on B, and on A frames with the launcher's cue id (what the
launcher hears when its own cues echo back). It checks that each radar's
reports hold only its own track ids and that no radar counts a frame of the
other bus; that the launcher counts the frames that are not its own as drops;
and that the log holds at most one line per device and drop reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from tests.netns import emit_result, run_in_netns
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP_A, GROUP_B = "239.74.163.21", "239.74.163.22"
CLASSIC_TIDS, FD_TIDS = range(100, 104), range(200, 204)
ROUNDS = 25  # every 0.08 s: 2 s of traffic
KEY = bytes(range(100, 132))


def _reports(tids: range) -> Any:
    from drivers.radar import TRACK_BATCH_DTYPE

    arr = np.zeros(len(tids), dtype=TRACK_BATCH_DTYPE)
    arr["sensor_track_id"] = list(tids)
    arr["sensor_time_ns"] = time.time_ns()
    arr["range_m"] = 20_000.0 + 1000.0 * np.arange(len(tids))
    arr["azimuth_rad"] = 1.0
    arr["elevation_rad"] = 0.1
    arr["range_rate_mps"] = -100.0
    for col in ("sigma_range_m", "sigma_azimuth_rad", "sigma_elevation_rad", "sigma_range_rate_mps"):
        arr[col] = 1.0 if col.endswith("_m") or col.endswith("mps") else 0.001
    arr["quality"] = 0.9
    return arr


def _device(dev_id: str, protocol: str, group: str, fd: bool, **extra: Any) -> dict[str, Any]:
    return {
        "id": dev_id,
        "protocol": protocol,
        "transport": {
            "kind": "can",
            "interface": "udp_multicast",
            "channel": group,
            "fd": fd,
            "poll_s": 0.02,
        },
        **extra,
    }


async def _main() -> dict[str, Any]:
    import can

    from drivers.base import Role
    from drivers.can_radar import CanRadarCodec
    from drivers.launcher import messages as launcher_messages
    from gateway.config import parse_config
    from gateway.supervisor import Gateway

    warnings: Counter[str] = Counter()

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings[record.getMessage().split(":")[0]] += 1

    logging.getLogger().addHandler(Count())
    site = {"lat_deg": 52.0, "lon_deg": 4.0, "alt_m": 10.0}
    cfg = parse_config(
        {
            "gateway_id": "e2e-can-isolation",
            "health_interval_s": 0.1,
            "mqtt": {"enabled": False},
            "devices": [
                _device("radar-can", "can_radar", GROUP_A, False, site=site),
                _device("radar-canfd", "can_radar", GROUP_B, True, site=site),
                _device(
                    "launcher",
                    "launcher",
                    GROUP_A,
                    True,
                    launcher_id=3,
                    cue_key_id=7,
                    cue_keys={"7": "hex:" + KEY.hex()},
                ),
            ],
        }
    )
    classic, fd = CanRadarCodec(Role.DEVICE, fd=False), CanRadarCodec(Role.DEVICE, fd=True)
    bus_a = can.Bus(interface="udp_multicast", channel=GROUP_A, fd=True)
    bus_b = can.Bus(interface="udp_multicast", channel=GROUP_B, fd=True)
    echo_id = launcher_messages.CUE.frame_id  # the launcher's own cue frame, heard back on its bus
    sent = Counter[str]()
    try:
        async with Gateway(cfg) as gw:
            sub = gw.reports.subscribe("test", maxsize=100_000)
            # Every device has opened its bus (its driver says "open: ..." until the first frame).
            await eventually(
                lambda: all(st.detail.startswith("open: ") for st in gw.stats.values()),
                what="every device's bus open",
            )
            for _ in range(ROUNDS):
                for bus, codec, tids in ((bus_a, classic, CLASSIC_TIDS), (bus_b, fd, FD_TIDS)):
                    for f in codec.encode_reports(_reports(tids)):
                        bus.send(
                            can.Message(
                                arbitration_id=f.arbitration_id,
                                data=f.data,
                                is_fd=f.is_fd,
                                is_extended_id=False,
                            )
                        )
                        sent["fd" if f.is_fd else "classic"] += 1
                bus_a.send(
                    can.Message(arbitration_id=echo_id, data=bytes(64), is_fd=True, is_extended_id=False)
                )
                sent["echo"] += 1
                await asyncio.sleep(0.08)
            await asyncio.sleep(0.5)
            tids: dict[str, set[int]] = {}
            for item in sub.get_all():
                assert item.source is not None
                tids.setdefault(item.device_id, set()).update(item.source["sensor_track_id"].tolist())
            stats = {
                d: {"drops": dict(gw.stats[d].drops), "reports": gw.stats[d].reports_out} for d in gw.stats
            }
    finally:
        bus_a.shutdown()
        bus_b.shutdown()
    return {
        "tids": {k: sorted(v) for k, v in tids.items()},
        "stats": stats,
        "warnings": dict(warnings),
        "sent": dict(sent),
    }


def netns_body() -> None:
    emit_result(asyncio.run(_main()))


def test_two_can_radars_and_a_launcher_on_udp_multicast_hear_only_their_own_bus() -> None:
    res = run_in_netns("from tests.e2e.test_can_bus_isolation_netns import netns_body; netns_body()", 60)
    tids, stats = res["tids"], res["stats"]
    # Each radar's reports carry its own tracks only, and plenty of them.
    assert tids.get("radar-can") == list(CLASSIC_TIDS), res
    assert tids.get("radar-canfd") == list(FD_TIDS), res
    for radar in ("radar-can", "radar-canfd"):
        assert stats[radar]["reports"] >= ROUNDS * len(CLASSIC_TIDS) // 2, res
        # Not a frame of the other bus reached the radar's codec (isolation, not just filtering).
        assert not {"unknown_id", "wrong_format"} & set(stats[radar]["drops"]), res
    # The launcher shares group A with the classic radar: those frames and its
    # echoed cue frames are counted drops, every one of them ...
    drops = stats["launcher"]["drops"]
    assert drops.get("unknown_id") == res["sent"]["classic"], res
    assert drops.get("direction") == res["sent"]["echo"], res
    # ... and the log says so once per reason, not once per frame.
    assert res["warnings"].get("launcher", 0) <= 2, res["warnings"]
    assert sum(res["warnings"].values()) <= 6, res["warnings"]

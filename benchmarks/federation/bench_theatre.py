"""The demo scenario split across three site gateways and fused by a theatre, over a NATS cluster.

Run: ``.venv/bin/python benchmarks/federation/bench_theatre.py [--duration S]
[--kills K] [--no-fast-path] [--json]`` (one command; defaults: 90 s, no kill).

Starts a three-node NATS JetStream cluster on 127.0.0.1
(sim_devices/nats_cluster.py) and, in this process, five whole gateways
sharing one scenario epoch (``[emulation] epoch_ns``), so every emulator
flies the same targets at the same times:

* three site gateways, each emulating its part of the bundled demo scenario
  (``builtin:demo``): ``site-fwd`` the forward land radar, ``frigates`` the
  two frigates' ASTERIX feeds, ``site-rear`` the rear land radar of the
  defended area (the launcher site). Each publishes its picture at QoS 1
  on the cluster's MQTT listeners and, unless ``--no-fast-path``, on the core
  NATS fast path (docs/federation.md §5);
* a ``theatre`` gateway with ``[federation]`` over the three sites;
* ``single``: one gateway fed every sensor of the scenario directly, the
  reference.

The theatre and the reference are scored live against the scenario's truth
(``[scoring]``, published by the site-fwd gateway's truth publisher on the
cluster): mean OSPA (c = 2 km, p = 2) and theatre ids per truth object.
Goals (issue 16): theatre OSPA within 10 % of the reference, <= 1.1 ids per
object. With ``--kills K`` it SIGKILLs the theatre's node K times, evenly
spread, restarting each 10 s later (one node of three down at a time), and
prints the theatre's picture outage per kill and the site pictures lost
after dedupe. Bounded: ``--duration`` plus a 30 s drain and start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config import parse_config
from gateway.supervisor import Gateway
from hilgw.v1 import truth_pb2
from sim_devices.nats_cluster import NatsCluster

SITES = {
    "site-fwd": ["radar-fwd"],
    "frigates": ["ew-ship-a", "ew-ship-b"],
    "site-rear": ["radar-rear"],
}
ALL_SENSORS = [s for sensors in SITES.values() for s in sensors]
TRUTH_TOPIC = "hilgw/truth"
CUTOFF_M = 2000.0
RESTART_AFTER_S = 10.0


def _mqtt(hosts: list[str], k: int) -> dict[str, Any]:
    """Each gateway starts on a node of its own (k) and fails over to the others."""
    order = hosts[k % 3 :] + hosts[: k % 3]
    return {
        "hosts": order,
        "reconnect_initial_s": 0.1,
        "reconnect_max_s": 0.5,
        # Above nats-server's own 4 s JetStream request timeout for loading a session.
        "connect_timeout_s": 6.0,
        "tracks_qos": 1,
    }


def _configs(cluster: NatsCluster, epoch: int, fast_path: bool) -> dict[str, Any]:
    hosts, servers = cluster.mqtt_hosts, cluster.nats_servers
    scoring = {"truth_topic": TRUTH_TOPIC, "cutoff_m": CUTOFF_M, "publish_hz": 1.0, "emulated_truth": False}
    cfgs: dict[str, dict[str, Any]] = {}
    for k, (gw, sensors) in enumerate(SITES.items()):
        cfgs[gw] = {
            "gateway_id": gw,
            "mqtt": _mqtt(hosts, k + 1),
            "fusion": {"publish_hz": 2.0},
            "emulation": {"scenario": "builtin:demo", "only": sensors, "epoch_ns": epoch},
        }
    cfgs["theatre"] = {
        "gateway_id": "theatre",
        "mqtt": _mqtt(hosts, 0),
        "fusion": {"publish_hz": 2.0},
        "federation": {"sites": [{"gateway_id": gw} for gw in SITES]},
        "scoring": scoring,
    }
    cfgs["single"] = {
        "gateway_id": "single",
        "mqtt": _mqtt(hosts, 2),
        "fusion": {"publish_hz": 2.0},
        "emulation": {"scenario": "builtin:demo", "only": ALL_SENSORS, "epoch_ns": epoch},
        "scoring": scoring,
    }
    if fast_path:
        for gw, raw in cfgs.items():
            k = 0 if gw == "theatre" else 1
            raw["nats"] = {"servers": servers[k:] + servers[:k], "publish_tracks": gw in SITES}
    return {gw: parse_config(raw) for gw, raw in cfgs.items()}


def _score(rep: truth_pb2.ScoreReport | None) -> dict[str, Any]:
    if rep is None:
        return {"steps": 0}
    return {
        "steps": rep.steps,
        "mean_ospa_m": round(rep.mean_ospa_m, 1),
        "ids_per_target": round(rep.track_ids_per_target, 3),
        "last_ospa_m": round(rep.ospa_m, 1),
        "truth": rep.truth_count,
        "tracks": rep.track_count,
        "id_swaps": rep.id_swaps,
        "track_breaks": rep.track_breaks,
        # Air and ballistic apart: the ballistic targets split into several
        # tracks at any gateway until ASTERIX reports of unknown height became
        # the Gaussian of their range arc (benchmarks/fusion/RESULTS.md).
        "ids_per_air_target": _mean_ids(rep, "tgt-air"),
        "ids_per_ballistic_target": _mean_ids(rep, "tgt-bm"),
        "ids_by_target": {t.target_id: t.track_ids for t in rep.targets if t.track_ids},
    }


def _mean_ids(rep: truth_pb2.ScoreReport, prefix: str) -> float | None:
    ids = [t.track_ids for t in rep.targets if t.target_id.startswith(prefix) and t.track_ids]
    return round(sum(ids) / len(ids), 3) if ids else None


def _outages(kills: list[float], used_mono: dict[str, list[float]]) -> list[float]:
    """Per kill: the longest wait for a new picture of any site at the theatre, until the next kill."""
    out = []
    for n, k in enumerate(kills):
        end = kills[n + 1] if n + 1 < len(kills) else k + 60.0
        worst = 0.0
        for times in used_mono.values():
            before = [t for t in times if t <= k]
            after = [t for t in times if k < t <= end]
            seq = ([before[-1]] if before else [k]) + (after or [end])
            worst = max(worst, *(b - a for a, b in itertools.pairwise(seq)))
        out.append(round(worst, 3))
    return out


async def run(ns: argparse.Namespace, work: Path) -> dict[str, Any]:
    cluster = NatsCluster(work / "nats", 3)
    cluster.start()
    # Scenario time zero a little ahead: every gateway's emulators are up by then.
    epoch = time.time_ns() + 5 * 10**9
    cfgs = _configs(cluster, epoch, ns.fast_path)
    gws: dict[str, Gateway] = {}
    kills: list[float] = []
    stack = contextlib.AsyncExitStack()
    try:
        for gw, cfg in cfgs.items():
            gws[gw] = await stack.enter_async_context(Gateway(cfg))
        fwd = gws["site-fwd"]
        assert fwd.emulation is not None
        await fwd.emulation.start_truth(cluster.mqtt_hosts[1], TRUTH_TOPIC, hz=2.0)
        theatre = gws["theatre"]
        assert theatre.mqtt is not None
        t0 = time.monotonic()
        kill_at = [ns.duration * (k + 1) / (ns.kills + 1) for k in range(ns.kills)]
        restart_at: list[tuple[float, int]] = []
        while (elapsed := time.monotonic() - t0) < ns.duration:
            if kill_at and elapsed >= kill_at[0] and not restart_at and theatre.mqtt.address is not None:
                kill_at.pop(0)
                i = cluster.mqtt_hosts.index(str(theatre.mqtt.address))
                cluster.kill(i)
                kills.append(time.monotonic())
                restart_at.append((elapsed + RESTART_AFTER_S, i))
            if restart_at and elapsed >= restart_at[0][0]:
                await asyncio.to_thread(cluster.restart, restart_at.pop(0)[1])
            await asyncio.sleep(0.2)
        for _, i in restart_at:
            await asyncio.to_thread(cluster.restart, i)
        drain = time.monotonic() + 30
        while any(s.missing for s in theatre.sites) and time.monotonic() < drain:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        for s in theatre.sites:
            s.settle()
        sites = {
            s.device_id: {
                "used": s.used,
                "first_by_path": dict(s.used_by_path),
                "still_missing": len(s.missing),
                **{k: int(v) for k, v in theatre.stats[s.device_id].drops.items()},
            }
            for s in theatre.sites
        }
        used_mono = {s.device_id: list(s.used_mono) for s in theatre.sites}
        scores = {
            gw: _score(gws[gw].scoring.last if gws[gw].scoring else None) for gw in ("theatre", "single")
        }
    finally:
        await stack.aclose()  # the gateways, last started first
        cluster.stop()
    th, single = scores["theatre"], scores["single"]
    ratio = (
        round(th["mean_ospa_m"] / single["mean_ospa_m"], 3)
        if th.get("mean_ospa_m") and single.get("mean_ospa_m")
        else None
    )
    return {
        "duration_s": ns.duration,
        "fast_path": ns.fast_path,
        "sites": {gw: sensors for gw, sensors in SITES.items()},
        "theatre": th,
        "single_gateway": single,
        "ospa_ratio_theatre_to_single": ratio,
        "kills": len(kills),
        "picture_outage_s": _outages(kills, used_mono),
        "lost_after_dedupe": sum(v.get("gap", 0) + v["still_missing"] for v in sites.values()),
        "per_site": sites,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--kills", type=int, default=0)
    ap.add_argument("--no-fast-path", dest="fast_path", action="store_false", help="MQTT only")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    if ns.kills and ns.duration / (ns.kills + 1) < RESTART_AFTER_S + 5:
        ap.error(f"kills closer than {RESTART_AFTER_S + 5:.0f} s apart: the killed node must be back first")
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(run(ns, Path(tmp)))
    if ns.json:
        print(json.dumps(res))
        return 0
    th, single = res["theatre"], res["single_gateway"]
    rows = [
        ("mean OSPA (m)", th.get("mean_ospa_m"), single.get("mean_ospa_m"), ""),
        ("OSPA ratio theatre/single", res["ospa_ratio_theatre_to_single"], "", "<= 1.10"),
        ("ids per truth object", th.get("ids_per_target"), single.get("ids_per_target"), "<= 1.1"),
        ("  air targets", th.get("ids_per_air_target"), single.get("ids_per_air_target"), ""),
        (
            "  ballistic targets",
            th.get("ids_per_ballistic_target"),
            single.get("ids_per_ballistic_target"),
            "",
        ),
        ("id swaps", th.get("id_swaps"), single.get("id_swaps"), ""),
        ("track breaks", th.get("track_breaks"), single.get("track_breaks"), ""),
        ("scored steps", th.get("steps"), single.get("steps"), ""),
    ]
    print(f"{'':<28}{'theatre':>10}{'single gw':>10}   goal")
    for name, a, b, goal in rows:
        print(f"{name:<28}{a if a is not None else '-':>10}{b if b is not None else '-':>10}   {goal}")
    print(
        f"kills {res['kills']}, picture outage per kill (s) {res['picture_outage_s']}, "
        f"lost after dedupe {res['lost_after_dedupe']}, fast path {res['fast_path']}"
    )
    for site, v in res["per_site"].items():
        print(f"  {site:<18} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Federation over a three-node NATS JetStream cluster: throughput, latency, node loss.

Run: ``.venv/bin/python benchmarks/federation/bench_federation.py [--duration S]
[--kills K] [--sites N] [--tracks M] [--rate HZ] [--no-fast-path] [--json]``.

Starts a NATS cluster on 127.0.0.1 (sim_devices/nats_cluster.py), ``--sites``
site publishers (each an MqttSession, as a site gateway's, publishing its
TrackBatch of ``--tracks`` tracks at ``--rate`` Hz, QoS 1, through its own
node with the others as failover, and, unless ``--no-fast-path``, on the
core NATS fast path too: gateway/federation/fastpath.py) and one theatre
gateway (a whole ``Gateway`` with a ``[federation]`` section and ``[nats]``,
in this process). During the run it SIGKILLs the node the theatre is
connected to ``--kills`` times, evenly spread, and restarts each killed node
10 s later (a kill waits until every node runs again: one node lost of three,
never two).

Prints per run: site pictures sent and received by the theatre, lost after
dedupe (sequence gaps; goal 0), duplicates, pictures that came late (after
a newer one: a failover's redelivery), pictures too old to fuse on arrival,
per kill the theatre's picture outage (the longest time without a new site
picture at the theatre, over the sites, after the kill; goal < 2 s) and its
MQTT session's failover (connection lost -> connected to another node),
which pictures came first by which path, transit latency from a site's publish to the
theatre's receipt (p50/p99/max; one clock), the theatre's fusion step time,
and theatre track ids per site object (every site holds the same objects).
Bounded: stops after ``--duration`` s plus a 30 s drain.
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

import numpy as np
import pymap3d

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config import MqttConfig, parse_config
from gateway.federation.fastpath import NatsLink, live_subject
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from gateway.sections.federation import NatsConfig
from gateway.supervisor import Gateway
from hilgw.v1 import track_pb2
from sim_devices.nats_cluster import NatsCluster

RESTART_AFTER_S = 10.0


def site_picture(
    gw: str, seq: int, epoch: int, base: np.ndarray, vel: np.ndarray, t_s: float, rng: np.random.Generator
) -> bytes:
    now = time.time_ns()
    b = track_pb2.TrackBatch(gateway_id=gw, batch_sequence=seq, time_ns=now, epoch_ns=epoch)
    cov = np.diag([40.0**2] * 3 + [4.0**2] * 3).ravel().tolist()
    pos = base + vel * t_s + rng.normal(0, 40, base.shape)
    for i in range(len(base)):
        t = b.tracks.add(track_id=i + 1, status=track_pb2.TRACK_STATUS_CONFIRMED, quality=0.9)
        s = t.state
        s.x, s.y, s.z = (float(v) for v in pos[i])
        s.vx, s.vy, s.vz = (float(v) for v in vel[i])
        s.covariance.extend(cov)
        t.last_update_time_ns = now
    return b.SerializeToString()


async def run(ns: argparse.Namespace, work: Path) -> dict[str, object]:
    cluster = NatsCluster(work / "nats", 3)
    cluster.start()
    hosts = cluster.mqtt_hosts
    servers = cluster.nats_servers
    site_ids = [f"site-{k + 1}" for k in range(ns.sites)]
    raw: dict[str, object] = {
        "gateway_id": "theatre",
        "fusion": {"publish_hz": 5.0},
        "mqtt": {
            "hosts": hosts,
            "reconnect_initial_s": 0.1,
            "reconnect_max_s": 0.5,
            "connect_timeout_s": 6.0,
        },
        "federation": {"sites": [{"gateway_id": s} for s in site_ids]},
    }
    if ns.fast_path:  # the theatre's fast path starts on the node of its MQTT session: both die at a kill
        raw["nats"] = {"servers": servers}
    cfg = parse_config(raw)
    sessions = {
        s: MqttSession(
            MqttConfig(
                hosts=hosts[(k + 1) % 3 :] + hosts[: (k + 1) % 3],
                reconnect_initial_s=0.1,
                reconnect_max_s=0.5,
            ),
            s,
        )
        for k, s in enumerate(site_ids)
    }
    links = {
        s: NatsLink(NatsConfig(servers=servers[(k + 1) % 3 :] + servers[: (k + 1) % 3]), f"bench-{s}")
        for k, s in enumerate(site_ids)
        if ns.fast_path
    }
    rng = np.random.default_rng(1)
    lat = rng.uniform(55, 58, ns.tracks)
    lon = rng.uniform(8, 14, ns.tracks)
    base = np.column_stack(pymap3d.geodetic2ecef(lat, lon, np.full(ns.tracks, 9000.0)))
    vel = rng.normal(0, 150, (ns.tracks, 3))
    tasks = [asyncio.create_task(s.run()) for s in sessions.values()]
    tasks += [asyncio.create_task(n.run()) for n in links.values()]
    downs: list[float] = []
    ups: list[float] = []
    kills: list[float] = []
    latencies: list[float] = []
    sent = 0
    epoch = time.time_ns()
    try:
        async with Gateway(cfg) as theatre:
            mqtt = theatre.mqtt
            assert mqtt is not None
            mqtt.on_link(lambda up: (ups if up else downs).append(time.monotonic()))
            # Transit latency: site publish (batch.time_ns) -> theatre receipt, one clock.
            for inp in theatre.sites:
                inner = inp._take

                def timed(payload: bytes, now: int, inner=inner) -> str | None:  # type: ignore[no-untyped-def]
                    reason = inner(payload, now)
                    if reason is None:  # the copy used: the first to arrive, by either path
                        with contextlib.suppress(Exception):
                            t = track_pb2.TrackBatch.FromString(payload).time_ns
                            latencies.append((now - t) * 1e-9)
                    return reason

                inp._take = timed  # type: ignore[method-assign]
            pictures = theatre.tracks.subscribe("bench", maxsize=100_000)
            deadline = time.monotonic() + 30
            nats_up = [n for n in [*links.values(), theatre.nats] if n is not None]
            while not (
                mqtt.connected
                and all(s.connected for s in sessions.values())
                and all(n.connected for n in nats_up)
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("clients did not connect to the cluster")
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # the theatre's subscriptions are in place
            t0 = time.monotonic()
            kill_at = [ns.duration * (k + 1) / (ns.kills + 1) for k in range(ns.kills)]
            restart_at: list[tuple[float, int]] = []
            period = 1.0 / ns.rate
            next_t = t0
            while (elapsed := time.monotonic() - t0) < ns.duration:
                sent += 1
                for s, sess in sessions.items():
                    payload = site_picture(s, sent, epoch, base, vel, elapsed, rng)
                    sess.enqueue(Outgoing(f"hilgw/{s}/tracks", payload, 1, kind="tracks"))
                    if s in links:
                        links[s].publish(live_subject("hilgw", s), payload)
                # One node of three at a time: the next kill waits for the last one's restart.
                if kill_at and elapsed >= kill_at[0] and not restart_at:
                    kill_at.pop(0)
                    i = hosts.index(str(mqtt.address))
                    cluster.kill(i)
                    kills.append(time.monotonic())
                    restart_at.append((elapsed + RESTART_AFTER_S, i))
                if restart_at and elapsed >= restart_at[0][0]:
                    await asyncio.to_thread(cluster.restart, restart_at.pop(0)[1])
                next_t += period
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            for _, i in restart_at:
                await asyncio.to_thread(cluster.restart, i)
            drain = time.monotonic() + 30

            # Polling on purpose: what is awaited is redelivery inside the cluster.
            # (and for what is missing: JetStream redelivers what was in flight to a
            # dead node only after the consumer's AckWait, after newer pictures).
            def pending() -> bool:
                return any(inp.last_seq < sent or inp.missing for inp in theatre.sites)

            while pending() and time.monotonic() < drain:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            for inp in theatre.sites:
                inp.settle()  # what is still missing now waits gap_wait_s more at most
            batches = pictures.get_all()
            used_mono = {inp.device_id: list(inp.used_mono) for inp in theatre.sites}
            steps = list(theatre.fusion.step_seconds)
            sites = {
                inp.device_id: {
                    "received_last_seq": inp.last_seq,
                    "first_seq": inp.first_seq,
                    "used": inp.used,
                    "still_missing": len(inp.missing),
                    "first_by_path": dict(inp.used_by_path),
                    **{k: int(v) for k, v in theatre.stats[inp.device_id].drops.items()},
                }
                for inp in theatre.sites
            }
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        cluster.stop()
    failovers = []
    outages = []
    for n, k in enumerate(kills):
        d = [x for x in downs if x >= k - 0.5]
        if d:
            u = [x for x in ups if x > d[0]]
            failovers.append(round(u[0] - d[0], 3) if u else float("inf"))
        # Picture outage: the longest wait for a new site picture at the theatre
        # from the kill until the next kill (or the end), the worst site.
        end = kills[n + 1] if n + 1 < len(kills) else k + 60.0
        worst = 0.0
        for times in used_mono.values():
            before = [t for t in times if t <= k]
            after = [t for t in times if k < t <= end]
            # No new picture until the next kill: the whole span was an outage.
            seq = ([before[-1]] if before else [k]) + (after or [end])
            gaps = [b - a for a, b in itertools.pairwise(seq)]
            worst = max(worst, max(gaps) if gaps else float("inf"))
        outages.append(round(worst, 3))
    ids = {t.track_id for b in batches for t in b.tracks if t.status == track_pb2.TRACK_STATUS_CONFIRMED}
    lat = np.array(latencies) if latencies else np.zeros(1)
    # Still missing after the drain counts as lost (the backstop had its chance).
    lost = sum(v.get("gap", 0) + v["still_missing"] + (sent - v["received_last_seq"]) for v in sites.values())
    return {
        "sites": ns.sites,
        "tracks_per_site": ns.tracks,
        "rate_hz": ns.rate,
        "duration_s": ns.duration,
        "pictures_sent_per_site": sent,
        "messages_per_s": round(sent * ns.sites / ns.duration, 1),
        "tracks_per_s": round(sent * ns.sites * ns.tracks / ns.duration, 1),
        "fast_path": ns.fast_path,
        "lost_after_dedupe": lost,
        "late": sum(v.get("late", 0) for v in sites.values()),
        "still_missing": sum(v["still_missing"] for v in sites.values()),
        "duplicates": sum(v.get("duplicate", 0) for v in sites.values()),
        "stale_on_arrival": sum(v.get("stale", 0) for v in sites.values()),
        "kills": len(kills),
        "picture_outage_s": outages,
        "mqtt_failover_s": failovers,
        "transit_latency_ms": {
            "p50": round(float(np.percentile(lat, 50)) * 1e3, 1),
            "p99": round(float(np.percentile(lat, 99)) * 1e3, 1),
            "max": round(float(lat.max()) * 1e3, 1),
        },
        "theatre_step_ms_median": round(float(np.median(steps)) * 1e3, 2) if steps else None,
        "theatre_ids_per_object": round(len(ids) / ns.tracks, 3),
        "per_site": sites,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--sites", type=int, default=3)
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--no-fast-path", dest="fast_path", action="store_false", help="MQTT only")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    if ns.kills and ns.duration / (ns.kills + 1) < RESTART_AFTER_S + 5:
        ap.error(f"kills closer than {RESTART_AFTER_S + 5:.0f} s apart: the killed node must be back first")
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(run(ns, Path(tmp)))
    if ns.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            if k != "per_site":
                print(f"{k:<28} {v}")
        for site, v in res["per_site"].items():  # type: ignore[attr-defined]
            print(f"  {site:<26} {v}")
    return 0 if res["lost_after_dedupe"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Gateway-added latency and throughput, serial radar -> gateway -> mosquitto -> subscriber (issue 18).

Three processes on one host (one wall clock, so no offset to correct):

* a writer process paces TRACK_REPORT frames into a pty at a set rate
  (reports of ``--targets`` stationary targets, round robin; sensor time =
  the time of writing), or as fast as the pty takes them (``max``);
* the gateway, in this process (one thread, one event loop): reads the pty,
  decodes, normalises, fuses at ``publish_hz`` and publishes to a real
  mosquitto on 127.0.0.1 (the bench is skipped without mosquitto);
* a subscriber process (paho) takes ``reports/radar`` and ``tracks`` and
  stamps each message on arrival.

Latencies, per report, from the driver's receive stamp (``receive_time_ns``,
taken right after the transport read):

* ``bus``    : the report batch published on the gateway's bus (normalised);
* ``encoded``: the message serialised and queued for MQTT (per message, from
  its oldest report's receipt; between ``bus`` and ``out``);
* ``out``    : the message handed to the broker connection (the gateway's
  ``mqtt`` stage, hilgw_stage_seconds): all the latency the gateway adds,
  per message, from its oldest report's receipt;
* ``mqtt``   : the report on MQTT at the subscriber;
* ``track``  : the first TrackBatch at the subscriber whose ``time_ns`` is
  at or after the receipt (the picture that took the report in); bounded below
  by the fusion period (``--publish-hz``).

Also: reports/s at the subscriber, drops (gateway, bus, MQTT queue), the
gateway's CPU seconds per second (process CPU of this process, the writer
and subscriber run in their own), peak RSS and the live track count as
the writer stops. The first
second of each run is warm-up and not counted.

    .venv/bin/python benchmarks/bench_latency.py [--rates 1000,10000,max] [--seconds 5] [--json]
"""

# ruff: noqa: ASYNC220, ASYNC240  (a benchmark driver: blocking process start-up is outside the timed part)

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tty
from array import array
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENSOR = 7
WARMUP_S = 1.0


# --- writer process ---------------------------------------------------------------


def polar_reports(
    idx: np.ndarray,
    targets: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    dtype: np.dtype[Any],
) -> np.ndarray:
    """Track reports (``dtype``: the radar codecs' batch) of targets ``idx`` of the
    stationary ``targets`` (range, azimuth, elevation), with measurement noise,
    stamped now: the serial writers of this bench, bench_memory and
    bench_multisource."""
    r0, az0, el0 = targets
    n = len(idx)
    a = np.zeros(n, dtype)
    a["sensor_track_id"] = idx + 1
    a["sensor_time_ns"] = time.time_ns()
    a["range_m"] = r0[idx] + rng.normal(0, 10, n)
    a["azimuth_rad"] = np.mod(az0[idx] + rng.normal(0, 1e-3, n), 2 * np.pi)
    a["elevation_rad"] = el0[idx] + rng.normal(0, 1e-3, n)
    a["sigma_range_m"] = 15.0
    a["sigma_azimuth_rad"] = 2e-3
    a["sigma_elevation_rad"] = 2e-3
    a["sigma_range_rate_mps"] = 1.0
    a["quality"] = 0.9
    return a


def _writer(fd: int, rate: float, seconds: float, targets: int) -> None:
    from drivers.base import Role
    from drivers.radar import TRACK_BATCH_DTYPE
    from drivers.serial_radar import SerialRadarCodec

    rng = np.random.default_rng(3)
    rng_range = rng.uniform(20e3, 150e3, targets)
    rng_az = rng.uniform(-1.2, 1.2, targets)
    rng_el = rng.uniform(0.01, 0.2, targets)
    codec = SerialRadarCodec(Role.DEVICE, sensor_id=SENSOR)
    os.set_blocking(fd, True)

    def frames(n: int, k0: int) -> bytes:
        idx = (k0 + np.arange(n)) % targets
        return codec.encode_track_batch(
            polar_reports(idx, (rng_range, rng_az, rng_el), rng, TRACK_BATCH_DTYPE)
        )

    # Pre-encoded in blocks of ~1 ms of reports, so that the writer's own CPU
    # does not limit the rate; sensor times are up to ``seconds`` old, well
    # inside the gateway's max_report_age_s.
    block = max(1, int(rate / 1000)) if rate > 0 else 256
    total = int(rate * seconds) if rate > 0 else 400_000
    blocks = [frames(block, k) for k in range(0, total, block)]
    print("ready", flush=True)
    sys.stdin.readline()  # go
    t0 = time.monotonic()
    sent = 0
    for k, data in enumerate(blocks):
        if rate > 0:
            delay = t0 + k * block / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elif time.monotonic() - t0 > seconds:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        sent += block
    print(sent, flush=True)


# --- subscriber process -----------------------------------------------------------


def _subscriber(port: int, out: str) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from hilgw.v1 import report_pb2, track_pb2

    rep_rx: list[np.ndarray] = []
    rep_at: list[np.ndarray] = []
    trk: list[tuple[int, int]] = []

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.time_ns()
        if msg.topic.endswith("/tracks"):
            trk.append((track_pb2.TrackBatch.FromString(bytes(msg.payload)).time_ns, now))
            return
        b = report_pb2.SensorReportBatch.FromString(bytes(msg.payload))
        rx = np.fromiter((r.receive_time_ns for r in b.reports), np.int64, len(b.reports))
        rep_rx.append(rx)
        rep_at.append(np.full(len(rx), now, np.int64))

    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe([("hilgw/bench/reports/radar", 0), ("hilgw/bench/tracks", 0)])
    c.loop_start()
    print("ready", flush=True)
    sys.stdin.readline()  # "stop", once the gateway has sent the tail
    c.loop_stop()
    cat = np.concatenate
    np.savez(
        out,
        rep_rx=cat(rep_rx) if rep_rx else np.zeros(0, np.int64),
        rep_at=cat(rep_at) if rep_at else np.zeros(0, np.int64),
        trk=np.array(trk, np.int64).reshape(-1, 2),
    )


# --- the gateway and the run ------------------------------------------------------


#: ``--pin``: the CPUs of everything that is not the gateway (writer, subscriber,
#: mosquitto, the fusion worker); the gateway's process keeps the first CPU.
_OTHERS: set[int] | None = None


def _pin_other(pid: int) -> None:
    """Move a rig process (or the fusion worker) off the gateway's CPU (``--pin``)."""
    if _OTHERS is not None:
        os.sched_setaffinity(pid, _OTHERS)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # peak resident set
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}
    p = np.percentile(x, [50, 90, 99]) * 1e-6
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]), "max": float(x.max() * 1e-6)}


async def _run(
    rate: float, seconds: float, port: int, targets: int, publish_hz: float, worker: str = "process"
) -> dict[str, object]:
    from gateway.config import parse_config
    from gateway.supervisor import Gateway

    master, slave = os.openpty()
    tty.setraw(slave)
    cfg = parse_config(
        {
            "gateway_id": "bench",
            "mqtt": {"port": port, "queue_size": 100_000},
            "fusion": {"publish_hz": publish_hz, "worker": worker},
            "devices": [
                {
                    "id": "radar",
                    "protocol": "serial_radar",
                    "wire_sensor_id": SENSOR,
                    "transport": {"kind": "serial", "url": os.ttyname(slave), "baudrate": 921600},
                    "site": {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0},
                    "max_report_age_s": 60.0,
                }
            ],
        }
    )
    # Samples in arrays of machine ints, not lists of tuples: ~15,000 tuples a
    # second kept alive for the run are GC-tracked objects in this process, and
    # the collections they cause (gen 2 passes of 35-50 ms over the whole heap)
    # were the benchmark timing itself (issue 18).
    bus = array("q")  # (receive, now, reports) per report batch on the bus
    py = sys.executable
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "sub.npz")
        async with Gateway(cfg) as gw:
            out_stage = array("q")  # (receive, now) per message handed to the broker
            enc_stage = array("q")  # (receive, now) per message serialised and queued for MQTT

            def listen(stage: str, rx: int, now: int, n: int) -> None:
                if stage == "bus":
                    bus.append(rx)
                    bus.append(now)
                    bus.append(n)
                elif stage == "mqtt":
                    out_stage.append(rx)
                    out_stage.append(now)
                elif stage == "encoded":
                    enc_stage.append(rx)
                    enc_stage.append(now)

            gw.stages.listeners.append(listen)
            sub = subprocess.Popen(
                [py, me, "--subscriber", str(port), out],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            _pin_other(sub.pid)
            worker_proc = gw.fusion.process_worker
            if worker_proc is not None:
                _pin_other(worker_proc.pid)
            assert sub.stdout is not None
            await asyncio.to_thread(sub.stdout.readline)  # "ready"
            await asyncio.sleep(0.3)
            writer = subprocess.Popen(
                [py, me, "--writer", str(master), str(rate), str(seconds), str(targets)],
                pass_fds=(master,),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            _pin_other(writer.pid)
            assert writer.stdin is not None
            assert writer.stdout is not None
            await asyncio.to_thread(writer.stdout.readline)  # "ready": frames encoded
            t_start = time.time_ns()
            cpu0, wall0 = time.process_time(), time.monotonic()
            writer.stdin.write("go\n")
            writer.stdin.flush()
            sent_s, _ = await asyncio.to_thread(writer.communicate)
            if writer.returncode != 0:
                raise RuntimeError(f"writer process failed (exit {writer.returncode})")
            picture = gw.fusion.last_picture  # live tracks as the writer stops
            steps = np.array(gw.fusion.step_seconds) * 1e3  # engine.step, wall ms (recent 256)
            tracks = len(picture) if picture is not None else 0
            # Let the tail through: until the subscriber has it all, at most 10 s.
            for _ in range(100):
                queued = any(len(s) for s in gw.reports.subscriptions)
                if gw.mqtt is None or (not gw.mqtt.queued and not queued):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            stats = gw.stats["radar"]
            gw_drops = sum(stats.drops.values())
            bus_drops = sum(gw.subscription_drops().values())
            mq_drops = sum(gw.mqtt.dropped.values()) if gw.mqtt else 0
            rss = _rss_mb()
            assert sub.stdin is not None
            sub.stdin.write("stop\n")
            sub.stdin.flush()
            await asyncio.to_thread(sub.wait)
        d = np.load(out)
    os.close(master)
    os.close(slave)
    sent = int(sent_s.strip() or 0)
    warm = t_start + int(WARMUP_S * 1e9)
    rep_rx, rep_at, trk = d["rep_rx"], d["rep_at"], d["trk"]
    keep = rep_rx >= warm
    mqtt_lat = (rep_at - rep_rx)[keep]
    b = np.frombuffer(bus, np.int64).reshape(-1, 3)
    b = b[b[:, 0] >= warm]
    bus_lat = np.repeat(b[:, 1] - b[:, 0], b[:, 2])
    o = np.frombuffer(out_stage, np.int64).reshape(-1, 2)
    o = o[o[:, 0] >= warm]
    out_lat = o[:, 1] - o[:, 0]  # per message, from its oldest report's receipt
    e = np.frombuffer(enc_stage, np.int64).reshape(-1, 2)
    e = e[e[:, 0] >= warm]
    enc_lat = e[:, 1] - e[:, 0]  # per message: serialised and queued (the step before "out")
    trk = trk[np.argsort(trk[:, 0])] if len(trk) else trk
    track_lat = np.zeros(0, np.int64)
    if len(trk):
        rx = rep_rx[keep]
        j = np.searchsorted(trk[:, 0], rx, side="left")
        ok = j < len(trk)
        # The first picture at or after the receipt; its arrival may lag a later one's (no, FIFO).
        track_lat = trk[j[ok], 1] - rx[ok]
    span = max((rep_at.max() - rep_at.min()) * 1e-9, 1e-9) if len(rep_at) else 1e-9
    return {
        "rate": "max" if rate <= 0 else int(rate),
        "worker": worker,
        "sent": sent,
        "received": len(rep_rx),
        "reports_per_s": len(rep_rx) / span,
        "gateway_drops": gw_drops,
        "bus_drops": bus_drops,
        "mqtt_drops": mq_drops,
        "lost": sent - len(rep_rx),
        "gateway_cpu_per_s": cpu / wall,
        "rss_mb": rss,
        "live_tracks": tracks,
        "bus_ms": _pct(bus_lat),
        "fusion_step_ms": {
            "p50": float(np.median(steps)) if len(steps) else float("nan"),
            "max": float(steps.max()) if len(steps) else float("nan"),
        },
        "encoded_ms": _pct(enc_lat),
        "gateway_out_ms": _pct(out_lat),
        "mqtt_ms": _pct(mqtt_lat),
        "track_ms": _pct(track_lat),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        _writer(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        _subscriber(int(sys.argv[2]), sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,10000,max", help="reports/s, comma-separated; max = unpaced")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--publish-hz", type=float, default=5.0, help="fusion rate (the [fusion] default)")
    ap.add_argument(
        "--worker", default="process", choices=("process", "thread", "inline"), help="where fusion steps"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--uvloop", action="store_true", help="run the gateway on uvloop (if installed)")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the gateway process into FILE (pstats)")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="the gateway on a CPU of its own; writer, subscriber, mosquitto, fusion worker on the rest",
    )
    ns = ap.parse_args()
    global _OTHERS
    pinned = ""
    if ns.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            print("--pin needs two CPUs or more", file=sys.stderr)
            return 2
        os.sched_setaffinity(0, {cpus[0]})  # before any thread starts: they inherit it
        _OTHERS = set(cpus[1:])
        pinned = f"gateway on CPU {cpus[0]}, the rest on {sorted(_OTHERS)}"
    mosq = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if mosq is None:
        print("mosquitto not installed: nothing measured", file=sys.stderr)
        return 2
    from tests.conftest import free_port, wait_port

    rows = []
    for r in ns.rates.split(","):
        rate = 0.0 if r.strip() == "max" else float(r)
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "m.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n")
            proc = subprocess.Popen([mosq, "-c", str(conf)], stderr=subprocess.DEVNULL)
            _pin_other(proc.pid)
            try:
                wait_port(port)
                run = _run(rate, ns.seconds, port, ns.targets, ns.publish_hz, ns.worker)
                factory = None
                if ns.uvloop:
                    try:
                        import uvloop
                    except ImportError:
                        print("--uvloop: uvloop is not installed (pip install uvloop)", file=sys.stderr)
                        return 2
                    factory = uvloop.new_event_loop
                if ns.profile:
                    import cProfile

                    with cProfile.Profile() as prof, asyncio.Runner(loop_factory=factory) as runner:
                        rows.append(runner.run(run))
                    prof.dump_stats(f"{ns.profile}.{r.strip()}")
                else:
                    with asyncio.Runner(loop_factory=factory) as runner:
                        rows.append(runner.run(run))
            finally:
                proc.terminate()
                proc.wait()
    load = os.getloadavg()[0]
    if ns.json:
        print(json.dumps({"load_1min": load, "seconds": ns.seconds, "pinned": pinned, "runs": rows}))
        return 0
    from rich.console import Console
    from rich.table import Table

    where = f", {pinned}" if pinned else ""
    t = Table(title=f"serial radar -> gateway -> mosquitto -> subscriber (load {load:.1f}{where})")
    for col in (
        "rate",
        "reports/s",
        "lost / drops",
        "CPU",
        "RSS, tracks",
        "bus p50/p99/max",
        "encoded p50/p99",
        "out p50/p99/max",
        "MQTT p50/p90/p99/max",
        "track p50/p99",
        "step p50/max",
    ):
        t.add_column(col, justify="right")
    for x in rows:
        bm, om, mm, tm = x["bus_ms"], x["gateway_out_ms"], x["mqtt_ms"], x["track_ms"]
        em = x["encoded_ms"]
        assert isinstance(em, dict)
        fm = x["fusion_step_ms"]
        assert isinstance(fm, dict)
        assert isinstance(om, dict)
        assert isinstance(bm, dict)
        assert isinstance(mm, dict)
        assert isinstance(tm, dict)
        t.add_row(
            str(x["rate"]),
            f"{x['reports_per_s']:,.0f}",
            f"{x['lost']} / {x['gateway_drops']}+{x['bus_drops']}+{x['mqtt_drops']}",
            f"{x['gateway_cpu_per_s']:.2f}",
            f"{x['rss_mb']:.0f} MB, {x['live_tracks']}",
            f"{bm['p50']:.2f}/{bm['p99']:.2f}/{bm['max']:.1f} ms",
            f"{em['p50']:.2f}/{em['p99']:.2f} ms",
            f"{om['p50']:.2f}/{om['p99']:.2f}/{om['max']:.1f} ms",
            f"{mm['p50']:.2f}/{mm['p90']:.2f}/{mm['p99']:.2f}/{mm['max']:.1f} ms",
            f"{tm['p50']:.0f}/{tm['p99']:.0f} ms",
            f"{fm['p50']:.0f}/{fm['max']:.0f} ms",
        )
    Console(width=190).print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())

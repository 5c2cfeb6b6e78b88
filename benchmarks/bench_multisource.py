#!/usr/bin/env python3
"""Serial + CAN + ASTERIX at once through the real transports: throughput and latency (issue 18).

    .venv/bin/python benchmarks/bench_multisource.py [--rate 50000] [--mix serial=1400,can=5600,asterix=rest]
        [--seconds 5] [--targets 1000] [--worker process] [--pin] [--json]

One command, run in a private network namespace it creates (``unshare -n``:
loopback with multicast, nothing touches the machine's interfaces):

* a **serial** radar: a writer process paces TRACK_REPORT frames into a pty
  (benchmarks/bench_latency.py's writer);
* a **CAN FD** radar: a writer process sends the DBC's FD track frames on
  python-can's ``udp_multicast`` bus (vcan needs a kernel module this
  machine may lack; the gateway's ``CanTransport`` reads it as any bus);
* an **ASTERIX** feed: a writer process sends CAT048 datagrams (40 records
  each) to the gateway's UDP port on 127.0.0.1;
* the gateway in this process (fusion in its worker, ``--worker``), a real
  mosquitto on 127.0.0.1 and a paho subscriber process.

The aggregate ``--rate`` (reports/s) is split by ``--mix``: by default
each wire at about 95 % of what it carries (serial 1,400 of 1,486/s, CAN FD
5,600 of 5,800 frames/s) and ASTERIX the rest (43,000/s of 50,000). Each writer
pre-encodes its frames, then paces them in 1 ms blocks. Latency per report
from the driver's receive stamp (taken right after the transport read):

* ``bus``: normalised and on the gateway's bus;
* ``mqtt``: its SensorReportBatch at the subscriber (frame -> report on MQTT);
* ``picture``: the first fused picture published on the gateway's bus whose
  time is at or after the receipt (bounded below by the fusion period).

The first second is warm-up and not counted. The table also gives each
source's rate against what its wire could carry (a 921.6 kbaud line, a CAN
FD bus at 1/5 Mbit/s, a 100 Mbit/s Ethernet feed): a pty, the loopback and
a software bus have no such limit, so a ``--mix`` may drive a source past its
wire (the table says so). One table, or with ``--json`` one object: per
source asked/sent/out/drops, reports/s at the subscriber, losses, latency
percentiles, CPU and peak RSS of the gateway and its fusion worker.

Where the CPU goes: CPU seconds per second of every process (gateway,
fusion worker, each writer, mosquitto, subscriber), of each thread of the
gateway, and of the whole machine (busy, of it niced, idle), over the
writers' run. ``--pin`` puts the gateway's process on a CPU of its own and
everything else on the others (the issue's "gateway on one core").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GROUP = "239.0.18.1"  # the CAN bus's multicast group, inside the namespace only
SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"
IN_NETNS = "HILGW_BENCH_IN_NETNS"
WARMUP_S = 1.0
SITE = {"lat_deg": 54.0, "lon_deg": 10.0, "alt_m": 20.0}
SERIAL_ID, CAN_ID = 7, 9
#: CAT048 records in each of the ASTERIX writer's datagrams (a datagram drop loses as many).
ASTERIX_PER_DATAGRAM = 40
#: Reports/s each wire could carry (frame sizes from the ICDs; docs/icd/).
WIRE_LIMIT = {
    # 921,600 baud, 10 bits a byte, a COBS-framed TRACK_REPORT of ~62 bytes.
    "serial": 921_600 / 10 / 62,
    # CAN FD 1 Mbit/s arbitration, 5 Mbit/s data: one 64-byte frame a report, ~170 us.
    "can": 5_800,
    # 100 Mbit/s Ethernet: a 40-record CAT048 datagram of ~1 kB.
    "asterix": 100e6 / 8 / 1_100 * 40,
}


# --- writer processes ----------------------------------------------------------------


def _pace(make: Any, send: Any, block: int, rate: float, seconds: float) -> str:
    """Build and send block k (``make(k)``, stamped now) every ``block / rate`` s.

    Returns "<reports sent> <CPU seconds this process used while sending>".
    """
    print("ready", flush=True)
    sys.stdin.readline()  # go
    t0 = time.monotonic()
    cpu0 = time.process_time()
    sent = 0
    for k in range(int(rate * seconds) // block):
        delay = t0 + k * block / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() - t0 > seconds + 1.0:
            break  # cannot keep up: stop rather than run on
        send(make(k))
        sent += block
    return f"{sent} {time.process_time() - cpu0:.3f}"


@functools.cache
def _targets(targets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range, azimuth, elevation of the stationary targets (the same in every block;
    drawn once: the serial writer builds a block every millisecond)."""
    g = np.random.default_rng(11)
    return g.uniform(20e3, 150e3, targets), g.uniform(-1.2, 1.2, targets), g.uniform(0.01, 0.2, targets)


def _polar(n: int, k0: int, targets: int, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
    """Reports of ``n`` of ``targets`` stationary targets (round robin from k0), stamped now."""
    from benchmarks.bench_latency import polar_reports

    return polar_reports((k0 + np.arange(n)) % targets, _targets(targets), rng, dtype)


def _can_writer(rate: float, seconds: float, targets: int) -> None:
    """CAN FD track frames, one a report. The codec encodes ~50 us a report, too
    slow to do while pacing: a pool of frames (two noise draws per target) is
    encoded first, and each frame sent gets the time of sending patched into its
    SensorTime signal (can_radar_fd.dbc: bits 64-127, int64 LE, UTC ns) and
    the next Sequence number (bits 32-63) into its own."""
    import can

    from drivers.base import Role
    from drivers.can_radar import CanRadarCodec
    from drivers.radar import TRACK_BATCH_DTYPE

    rng = np.random.default_rng(4)
    codec = CanRadarCodec(Role.DEVICE, fd=True)
    a = _polar(2 * targets, 0, targets, rng, TRACK_BATCH_DTYPE)
    a["sensor_track_id"] %= 4096
    frames = codec.encode_reports(a)
    assert len(frames) == len(a)
    probe = a[:1].copy()
    probe["sensor_time_ns"] += 0x0102030405
    one, two = (CanRadarCodec(Role.DEVICE, fd=True).encode_reports(x)[0].data for x in (a[:1], probe))
    moved = [i for i, (x, y) in enumerate(zip(one, two, strict=True)) if x != y]
    assert set(moved) <= set(range(8, 16)), moved  # the SensorTime signal and nothing else
    pool = [(f.arbitration_id, bytearray(f.data)) for f in frames]
    seq0 = int.from_bytes(pool[-1][1][4:8], "little") + 1  # Sequence (bits 32-63) runs on
    block = max(1, int(rate / 1000))

    def make(k: int) -> list[can.Message]:
        now = time.time_ns().to_bytes(8, "little", signed=True)
        out = []
        for j in range(k * block, (k + 1) * block):
            fid, data = pool[j % len(pool)]
            data[4:8] = ((seq0 + j) % 2**32).to_bytes(4, "little")
            data[8:16] = now
            out.append(can.Message(arbitration_id=fid, data=bytes(data), is_fd=True, is_extended_id=False))
        return out

    with can.Bus(interface="udp_multicast", channel=GROUP, fd=True) as bus:

        def send(msgs: list[can.Message]) -> None:
            for m in msgs:
                bus.send(m)

        print(_pace(make, send, block, rate, seconds), flush=True)


def _asterix_writer(port: int, rate: float, seconds: float, targets: int) -> None:
    """CAT048 datagrams of 40 records. Encoding takes ~0.8 ms a record here, so a
    pool of datagrams is encoded first and each one sent gets the time of
    day of sending patched into its records' I048/140 (24 bits, 1/128 s)."""
    from drivers.asterix import AsterixCodec, TargetReport048
    from drivers.base import Role

    enc = AsterixCodec(Role.DEVICE)
    per = ASTERIX_PER_DATAGRAM
    g = np.random.default_rng(12)
    r0, az0 = g.uniform(20e3, 150e3, targets), g.uniform(0, 6.2, targets)
    rng = np.random.default_rng(5)
    t_ns = 1_700_000_000 * 10**9  # a whole day: time of day 0

    def records(j: int, dt_ns: int) -> list[TargetReport048]:
        idx = np.arange(j, j + per) % targets
        rs = r0[idx] + rng.normal(0, 10, per)
        return [
            TargetReport048(25, 10, t_ns + dt_ns, float(rs[i]), float(az0[idx[i]]), 3000.0, int(idx[i]) + 1)
            for i in range(per)
        ]

    # Where the time of day sits: the bytes that move when it moves by 0x010101 LSB.
    first = records(0, 0)
    a = enc.send(first)
    b = enc.send([dataclasses.replace(r, t_ns=r.t_ns + 0x010101 * 7_812_500) for r in first])
    moved = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    assert len(moved) == 3 * per, len(moved)
    tod_at = moved[::3]  # each record's I048/140, big-endian
    pool = [bytearray(enc.send(records(j, 0))) for j in range(0, 2 * targets, per)]
    block = max(per, int(rate / 1000) // per * per)

    def make(k: int) -> list[bytes]:
        tod = (time.time_ns() // 7_812_500 % (86_400 * 128)).to_bytes(3, "big")
        out = []
        for j in range(k * block // per, (k + 1) * block // per):
            d = pool[j % len(pool)]
            for i in tod_at:
                d[i : i + 3] = tod
            out.append(bytes(d))
        return out

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)

    def send(dgs: list[bytes]) -> None:
        for d in dgs:
            sock.sendto(d, ("127.0.0.1", port))

    print(_pace(make, send, block, rate, seconds), flush=True)


def _serial_writer(fd: int, rate: float, seconds: float, targets: int) -> None:
    from drivers.base import Role
    from drivers.radar import TRACK_BATCH_DTYPE
    from drivers.serial_radar import SerialRadarCodec

    rng = np.random.default_rng(3)
    codec = SerialRadarCodec(Role.DEVICE, sensor_id=SERIAL_ID)
    os.set_blocking(fd, True)
    # Encoding costs ~0.2 ms a call whatever the size (COBS, CRC, numpy set-up):
    # a block of a millisecond (1-2 reports) took 0.3 CPU s/s from the rig's
    # core. Blocks of >= 10 reports (7 ms at 1,400/s) cost a sixth of it.
    block = max(10, int(rate / 1000))

    def make(k: int) -> bytes:  # vectorised: cheap enough to stamp each block as it goes
        return codec.encode_track_batch(_polar(block, k * block, targets, rng, TRACK_BATCH_DTYPE))

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    print(_pace(make, send, block, rate, seconds), flush=True)


def _subscriber(port: int, out: str) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from hilgw.v1 import report_pb2

    rx: list[np.ndarray] = []
    at: list[np.ndarray] = []

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        now = time.time_ns()
        b = report_pb2.SensorReportBatch.FromString(bytes(msg.payload))
        r = np.fromiter((x.receive_time_ns for x in b.reports), np.int64, len(b.reports))
        rx.append(r)
        at.append(np.full(len(r), now, np.int64))

    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe([("hilgw/bench/reports/#", 0)])
    c.loop_start()
    print("ready", flush=True)
    sys.stdin.readline()
    c.loop_stop()
    z = np.zeros(0, np.int64)
    np.savez(out, rx=np.concatenate(rx) if rx else z, at=np.concatenate(at) if at else z)


# --- the gateway ------------------------------------------------------------------------


def _pct(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return dict.fromkeys(("p50", "p99", "p999", "max"), float("nan"))
    p = np.percentile(x, [50, 99, 99.9]) * 1e-6
    return {"p50": float(p[0]), "p99": float(p[1]), "p999": float(p[2]), "max": float(x.max() * 1e-6)}


def _proc_status(pid: int | str, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` by name (threads of one name summed;
    this process's threads by their Python name)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()} if pid == os.getpid() else {}
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = names.get(int(tid)) or Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            name = name.split(" ")[0]  # "can-reader can udp_multicast:..." -> "can-reader"
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _machine_cpu() -> dict[str, float]:
    """The whole machine's CPU seconds since boot (/proc/stat): busy, of which nice, and idle."""
    v = [int(x) / os.sysconf("SC_CLK_TCK") for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = v[3] + v[4]
    return {"busy": sum(v[:8]) - idle, "nice": v[1], "idle": idle}


class CpuMeter:
    """CPU seconds of named processes (and the gateway's threads) between ``start`` and ``stop``.

    What a process (or thread) that ended in between used is not seen: the
    rig's processes are read before they are reaped.
    """

    def __init__(self, pids: dict[str, int], gateway: int) -> None:
        self.pids = pids
        self.gateway = gateway
        self.wall = 0.0

    def _read(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        procs = {}
        for name, pid in self.pids.items():
            try:
                procs[name] = _proc_cpu(pid)
            except OSError:
                procs[name] = float("nan")
        return procs, _thread_cpu(self.gateway), _machine_cpu()

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._p0, self._th0, self._m0 = self._read()

    def stop(self) -> dict[str, dict[str, float]]:
        """CPU s/s of each process, each gateway thread and the machine over the window."""
        p1, th1, m1 = self._read()
        wall = self.wall = time.monotonic() - self._t0
        return {
            "process": {k: (p1[k] - self._p0[k]) / wall for k in p1},
            "gateway_threads": {k: (v - self._th0.get(k, 0.0)) / wall for k, v in th1.items()},
            "machine": {k: (m1[k] - self._m0[k]) / wall for k in m1},
        }


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The default mix: each wire at ~95 % of what it carries, ASTERIX the rest.
DEFAULT_MIX = "serial=1400,can=5600,asterix=rest"


def split_rate(total: float, mix: str) -> dict[str, float]:
    """Reports/s per source from ``--mix``: ``name=<reports/s>`` or ``name=rest``.

    ``rest`` (at most one source) gets ``total`` less the others. When the
    fixed rates add up to more than ``total`` they are scaled down to fit it
    and ``rest`` gets nothing. Raises ValueError for an unknown source or a
    malformed entry.
    """
    fixed: dict[str, float] = {}
    rest: list[str] = []
    for part in mix.split(","):
        name, sep, value = part.strip().partition("=")
        if name not in WIRE_LIMIT or not sep:
            raise ValueError(f"--mix: {part!r}: expected <{'|'.join(WIRE_LIMIT)}>=<reports/s or rest>")
        if value == "rest":
            rest.append(name)
        else:
            fixed[name] = float(value)
    if len(rest) > 1:
        raise ValueError(f"--mix: only one source can take the rest, not {rest}")
    asked = sum(fixed.values())
    scale = min(1.0, total / asked) if asked > 0 else 1.0
    rates = {k: v * scale for k, v in fixed.items() if v > 0}
    if rest and total - asked > 0:
        rates[rest[0]] = total - asked
    return rates


#: ``--pin``: the CPUs of everything that is not the gateway (writers, subscriber,
#: mosquitto, the fusion worker); the gateway's process keeps the first CPU.
_OTHERS: set[int] | None = None


def pin_plan(cpus: set[int]) -> tuple[int, set[int]]:
    """``--pin``: the gateway's CPU and the others' from the CPUs this process may use.

    The lowest CPU is the gateway's, every other one the rig's. Raises
    ValueError with fewer than two CPUs (nothing left for the rig).
    """
    if len(cpus) < 2:
        raise ValueError(f"--pin needs two CPUs or more, this process may use {sorted(cpus)}")
    first = min(cpus)
    return first, cpus - {first}


def _pin_other(pid: int) -> None:
    """Move a rig process (or the fusion worker) off the gateway's CPU (``--pin``)."""
    if _OTHERS is not None:
        os.sched_setaffinity(pid, _OTHERS)


def _start(args: list[str], **kw: Any) -> subprocess.Popen[str]:
    me = str(Path(__file__).resolve())
    proc = subprocess.Popen(
        [sys.executable, me, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw
    )
    _pin_other(proc.pid)
    return proc


async def _run(ns: argparse.Namespace, port: int) -> dict[str, Any]:
    from gateway.config import parse_config
    from gateway.supervisor import Gateway
    from hilgw.v1 import cue_pb2

    rates = split_rate(ns.rate, ns.mix)
    master, slave = os.openpty()
    tty.setraw(slave)
    ast_port = _udp_port() if "asterix" in rates else 0
    devices: list[dict[str, Any]] = []
    if "serial" in rates:
        devices.append(
            {
                "id": "serial",
                "protocol": "serial_radar",
                "wire_sensor_id": SERIAL_ID,
                "transport": {"kind": "serial", "url": os.ttyname(slave), "baudrate": 921600},
                "site": SITE,
                "max_report_age_s": 60.0,
            }
        )
    if "can" in rates:
        devices.append(
            {
                "id": "can",
                "protocol": "can_radar",
                "transport": {"kind": "can", "interface": "udp_multicast", "channel": GROUP, "fd": True},
                "site": {**SITE, "lat_deg": 54.2},
                "max_report_age_s": 60.0,
            }
        )
    if "asterix" in rates:
        devices.append(
            {
                "id": "asterix",
                "protocol": "asterix",
                "transport": {"kind": "udp", "bind_host": "127.0.0.1", "bind_port": ast_port},
                "ownship": {"lat_deg": 54.1, "lon_deg": 10.2},
                "max_report_age_s": 60.0,
            }
        )
    raw: dict[str, Any] = {
        "gateway_id": "bench",
        "mqtt": {"port": port, "queue_size": 200_000},
        "fusion": {"publish_hz": ns.publish_hz, "worker": ns.worker},
        "devices": devices,
    }
    tmp_cue = tempfile.TemporaryDirectory()
    launcher: asyncio.subprocess.Process | None = None
    if ns.cue:
        launcher = await _cue_config(raw, Path(tmp_cue.name))
    cfg = parse_config(raw)
    bus: list[tuple[int, int, int]] = []
    pics: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "sub.npz")
        async with Gateway(cfg) as gw:

            def listen(stage: str, rx: int, now: int, n: int) -> None:
                if stage == "bus":
                    bus.append((rx, now, n))

            gw.stages.listeners.append(listen)
            publish = gw.tracks.publish

            def stamped(batch: Any) -> None:  # the picture's time and when it was published
                pics.append((batch.time_ns, time.time_ns()))
                publish(batch)

            gw.tracks.publish = stamped  # type: ignore[method-assign,assignment]  # the bench's stamp
            gw.fusion.tracks = gw.tracks
            if launcher is not None and gw.cue is not None:
                cue = gw.cue
                await asyncio.wait_for(cue.mqtt_connected.wait(), 30.0)  # subscribed to commands
                await _auto_cue(port)
                for _ in range(100):  # accepted (audited) within at most 10 s
                    if cue.core is not None and cue.core.authority.value == cue_pb2.AUTHORITY_AUTO_CUE:
                        break
                    await asyncio.sleep(0.1)
            sub = _start(["--subscriber", str(port), out])
            assert sub.stdout is not None
            await asyncio.to_thread(sub.stdout.readline)
            writers: dict[str, subprocess.Popen[str]] = {}
            args = [str(ns.seconds), str(ns.targets)]
            for name, rate in rates.items():
                if name == "serial":
                    writers[name] = _start(["--serial", str(master), str(rate), *args], pass_fds=(master,))
                elif name == "can":
                    writers[name] = _start(["--can", str(rate), *args])
                else:
                    writers[name] = _start(["--asterix", str(ast_port), str(rate), *args])
            for name, w in writers.items():
                assert w.stdout is not None
                if (await asyncio.to_thread(w.stdout.readline)).strip() != "ready":
                    for x in writers.values():
                        x.kill()
                    raise RuntimeError(f"the {name} writer failed to start (its error is above)")
            await asyncio.sleep(0.5)
            worker = gw.fusion.process_worker
            wpid = worker.pid if worker is not None else None
            if wpid:
                _pin_other(wpid)
            pids = {"subscriber": sub.pid, "mosquitto": MOSQUITTO_PID}
            if wpid:
                pids["fusion worker"] = wpid
            meter = CpuMeter(pids, os.getpid())
            t_start = time.time_ns()
            meter.start()
            cpu0, wcpu0, wall0 = time.process_time(), _proc_cpu(wpid) if wpid else 0.0, time.monotonic()
            for w in writers.values():
                assert w.stdin is not None
                w.stdin.write("go\n")
                w.stdin.flush()
            sent = {}
            writer_cpu = {}
            for name, w in writers.items():
                so, _ = await asyncio.to_thread(w.communicate)
                n, c = (so.strip() or "0 nan").split()
                sent[name], writer_cpu[f"{name} writer"] = int(n), float(c)
            cpu_split = meter.stop()
            wall = time.monotonic() - wall0
            cpu = time.process_time() - cpu0
            wcpu = (_proc_cpu(wpid) - wcpu0) if wpid else 0.0
            cpu_split["process"] = {
                "gateway": cpu / wall,
                **cpu_split["process"],
                **{k: v / meter.wall for k, v in writer_cpu.items()},
            }
            picture = gw.fusion.last_picture
            tracks = len(picture) if picture is not None else 0
            steps = np.array(gw.fusion.step_seconds) * 1e3
            for _ in range(100):  # the tail, at most 10 s
                queued = any(len(s) for s in gw.reports.subscriptions if s.name != "fusion")
                if gw.mqtt is None or (not gw.mqtt.queued and not queued):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            drops = {d: dict(st.drops) for d, st in gw.stats.items()}
            reports_out = {d: st.reports_out for d, st in gw.stats.items()}
            bus_drops = sum(gw.subscription_drops().values())
            mq_drops = sum(gw.mqtt.dropped.values()) if gw.mqtt else 0
            cue_state = gw.cue.core.authority.value if gw.cue is not None and gw.cue.core else None
            rss = _proc_status("self", "VmHWM")
            wrss = _proc_status(wpid, "VmHWM") if wpid else 0.0
            fusion = {
                "stale": gw.fusion.pictures_stale,
                "skipped": gw.fusion.ticks_skipped,
                "counters": gw.fusion.engine_counters(),
            }
            assert sub.stdin is not None
            sub.stdin.write("stop\n")
            sub.stdin.flush()
            await asyncio.to_thread(sub.wait)
        d = np.load(out)
    if launcher is not None:
        launcher.terminate()
        await launcher.wait()
    tmp_cue.cleanup()
    os.close(master)
    os.close(slave)
    warm = t_start + int(WARMUP_S * 1e9)
    rx, at = d["rx"], d["at"]
    keep = rx >= warm
    b = np.array(bus, np.int64).reshape(-1, 3)
    b = b[b[:, 0] >= warm]
    bus_lat = np.repeat(b[:, 1] - b[:, 0], b[:, 2])
    p = np.array(pics, np.int64).reshape(-1, 2)
    p = p[np.argsort(p[:, 0])]
    brx = np.repeat(b[:, 0], b[:, 2])
    j = np.searchsorted(p[:, 0], brx, side="left")
    ok = j < len(p)
    pic_lat = p[j[ok], 1] - brx[ok]
    span = max((at.max() - at.min()) * 1e-9, 1e-9) if len(at) else 1e-9
    # Cue latency: each cue frame written to the launcher link, from the
    # latest picture published before it (AUTO_CUE decides on a picture's arrival).
    cue_lat = np.zeros(0, np.int64)
    if CUE_SENT and len(p):
        sent_at = np.array(CUE_SENT, np.int64)
        pub = np.sort(p[:, 1])
        k = np.searchsorted(pub, sent_at, side="right") - 1
        cue_lat = (sent_at - pub[np.maximum(k, 0)])[k >= 0]
    return {
        "rate": ns.rate,
        "rates": rates,
        "worker": ns.worker,
        "sent": sent,
        "reports_out": reports_out,
        "received": len(rx),
        "reports_per_s": len(rx) / span,
        "lost": sum(sent.values()) - len(rx),
        # Reports lost with no drop counted for them anywhere (the device's drops, in
        # reports: an ASTERIX datagram drop is ASTERIX_PER_DATAGRAM of them; bus; MQTT).
        "lost_uncounted": sum(sent.values())
        - len(rx)
        - sum(
            sum(d.values()) * (ASTERIX_PER_DATAGRAM if name == "asterix" else 1)
            for name, d in drops.items()
            if name in sent
        ),
        "drops": drops,
        "bus_drops": bus_drops,
        "mqtt_drops": mq_drops,
        "gateway_cpu_per_s": cpu / wall,
        "cpu_per_s": cpu_split,
        "worker_cpu_per_s": wcpu / wall,
        "rss_mb": rss,
        "worker_rss_mb": wrss,
        "live_tracks": tracks,
        "fusion": fusion,
        "step_ms": {"p50": float(np.median(steps)) if len(steps) else float("nan")},
        "bus_ms": _pct(bus_lat),
        "mqtt_ms": _pct((at - rx)[keep]),
        "picture_ms": _pct(pic_lat),
        "cues_sent": len(CUE_SENT),
        "authority": cue_state,
        "cue_ms": _pct(cue_lat),
    }


#: mosquitto's process id (its CPU is measured with the gateway's).
MOSQUITTO_PID = 0
#: Wall-clock times at which a cue frame was written to the launcher link.
CUE_SENT: list[int] = []
WIRE_KEY = "5a" * 32  # the launcher's cue key (hex), as in tests/e2e/test_cue_e2e.py


async def _cue_config(raw: dict[str, Any], tmp: Path) -> asyncio.subprocess.Process:
    """A launcher emulator on a pty, its device and a ``[cue]`` block (the test
    keys of tests/e2e/cue_rig.py) in ``raw``; cue sends are stamped in CUE_SENT."""
    from gateway.devices.launcher import LauncherDriver
    from tests.e2e.cue_rig import write_keys_file
    from tests.waiting import wait_ready

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim_devices.launcher_emulator", "--transport", "serial",
        "--launcher-id", "1", "--key", f"1:{WIRE_KEY}", "--heartbeat-hz", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    (ready,) = await wait_ready(proc, what="launcher emulator")
    raw["devices"].append(
        {
            "id": "L1",
            "protocol": "launcher",
            "launcher_id": 1,
            "cue_key_id": 1,
            "cue_keys": {1: f"hex:{WIRE_KEY}"},
            "transport": {"kind": "serial", "url": ready["path"], "baudrate": 921600},
        }
    )
    raw["cue"] = {
        "keys_file": str(write_keys_file(tmp)),
        "audit_path": str(tmp / "audit.jsonl"),
        "launchers": [
            {
                "id": "L1",
                "key_id": "lk-1",
                # A few of the serial radar's targets (20-150 km out): a cue
                # each, not one per track of the picture (which floods the link).
                "coverage": {**SITE, "max_range_m": 21_000.0},
            }
        ],
    }
    send = LauncherDriver.send_cue

    async def stamped(self: LauncherDriver, cue: Any) -> Any:  # the bench's stamp on the wire write
        out = await send(self, cue)
        CUE_SENT.append(time.time_ns())
        return out

    LauncherDriver.send_cue = stamped  # type: ignore[method-assign]
    return proc


async def _auto_cue(port: int) -> None:
    """Raise the authority to AUTO_CUE with a signed operator command (the test operator)."""
    import aiomqtt

    from tests.unit.cue_support import authority_command

    cmd = authority_command("auto_cue", 1, time.time_ns(), gateway="bench")
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.publish("hilgw/bench/authority/command", cmd.SerializeToString(), qos=1)


def _in_netns(argv: list[str]) -> int:
    """Run this command again inside a new network namespace."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        print("needs Linux with unshare(1) and ip(8)", file=sys.stderr)
        return 2
    me = [sys.executable, str(Path(__file__).resolve()), *argv]
    body = f"{SETUP} && exec {shlex.join(me)}"
    env = {**os.environ, IN_NETNS: "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(["unshare", "-n", "sh", "-c", body], env=env, cwd=str(REPO)).returncode


def _table(x: dict[str, Any], load: float) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"serial + CAN + ASTERIX -> gateway -> mosquitto -> subscriber, fusion worker: "
        f"{x['worker']} (load {load:.1f}){', ' + x['pinned'] if x['pinned'] else ''}"
    )
    for col in ("figure", "value"):
        t.add_column(col, justify="right")
    for name, rate in x["rates"].items():
        over = "  OVER ITS WIRE" if rate > WIRE_LIMIT[name] else ""
        t.add_row(
            f"{name}: asked (wire limit) / sent / out of gateway / drops",
            f"{rate:,.0f}/s ({WIRE_LIMIT[name]:,.0f}/s){over} / {x['sent'][name]:,} / "
            f"{x['reports_out'][name]:,} / {sum(x['drops'][name].values())}",
        )

    def ms(k: str) -> str:
        v = x[k]
        return f"{v['p50']:.2f} / {v['p99']:.2f} / {v['p999']:.2f} / {v['max']:.1f} ms"

    t.add_row("reports/s at the subscriber", f"{x['reports_per_s']:,.0f}")
    t.add_row(
        "lost (of which uncounted) / bus drops / MQTT drops",
        f"{x['lost']} ({x['lost_uncounted']}) / {x['bus_drops']} / {x['mqtt_drops']}",
    )
    t.add_row("gateway CPU s/s (worker)", f"{x['gateway_cpu_per_s']:.2f} ({x['worker_cpu_per_s']:.2f})")
    split = x["cpu_per_s"]
    t.add_row("CPU s/s by process", ", ".join(f"{k} {v:.2f}" for k, v in split["process"].items()))
    busy = sorted(split["gateway_threads"].items(), key=lambda kv: -kv[1])
    t.add_row("gateway CPU s/s by thread", ", ".join(f"{k} {v:.2f}" for k, v in busy if v >= 0.005))
    m = split["machine"]
    t.add_row("machine CPU s/s: busy (niced) / idle", f"{m['busy']:.2f} ({m['nice']:.2f}) / {m['idle']:.2f}")
    t.add_row("peak RSS gateway + worker", f"{x['rss_mb']:.0f} + {x['worker_rss_mb']:.0f} MB")
    t.add_row("live tracks; step p50", f"{x['live_tracks']}; {x['step_ms']['p50']:.0f} ms")
    t.add_row("stale pictures / skipped periods", f"{x['fusion']['stale']} / {x['fusion']['skipped']}")
    t.add_row("bus p50/p99/p999/max", ms("bus_ms"))
    t.add_row("report on MQTT p50/p99/p999/max", ms("mqtt_ms"))
    t.add_row("picture p50/p99/p999/max", ms("picture_ms"))
    t.add_row("authority at the end (3: AUTO_CUE)", str(x["authority"]))
    t.add_row(f"cue on the launcher link ({x['cues_sent']} cues) p50/p99/p999/max", ms("cue_ms"))
    Console(width=160).print(t)


def main() -> int:
    a = sys.argv[1:]
    if a and a[0] == "--serial":
        _serial_writer(int(a[1]), float(a[2]), float(a[3]), int(a[4]))
        return 0
    if a and a[0] == "--can":
        _can_writer(float(a[1]), float(a[2]), int(a[3]))
        return 0
    if a and a[0] == "--asterix":
        _asterix_writer(int(a[1]), float(a[2]), float(a[3]), int(a[4]))
        return 0
    if a and a[0] == "--subscriber":
        _subscriber(int(a[1]), a[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50_000, help="aggregate reports/s")
    ap.add_argument(
        "--mix",
        default=DEFAULT_MIX,
        help="reports/s by source, one may be 'rest' (default: each wire below its limit, ASTERIX the rest)",
    )
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--targets", type=int, default=1000, help="distinct targets per source")
    ap.add_argument("--publish-hz", type=float, default=5.0)
    ap.add_argument("--worker", default="process", choices=("process", "thread", "inline"))
    ap.add_argument(
        "--no-cue", dest="cue", action="store_false", help="no launcher, no cue path (no cue latency)"
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="the gateway on a CPU of its own; writers, subscriber, mosquitto, fusion worker on the rest",
    )
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    try:
        split_rate(ns.rate, ns.mix)
        plan = pin_plan(os.sched_getaffinity(0)) if ns.pin else None
    except ValueError as exc:
        ap.error(str(exc))
    if not os.environ.get(IN_NETNS):
        return _in_netns(a)
    global _OTHERS
    pinned = ""
    if plan is not None:
        own, _OTHERS = plan
        os.sched_setaffinity(0, {own})  # before any thread starts: they inherit it
        pinned = f"gateway on CPU {own}, the rest on {sorted(_OTHERS)}"
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosq).exists():
        print("mosquitto not installed: nothing measured", file=sys.stderr)
        return 2
    from tests.conftest import free_port, wait_port

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n")
        proc = subprocess.Popen([mosq, "-c", str(conf)], stderr=subprocess.DEVNULL)
        global MOSQUITTO_PID
        MOSQUITTO_PID = proc.pid
        _pin_other(proc.pid)
        try:
            wait_port(port)
            result = asyncio.run(_run(ns, port))
        finally:
            proc.terminate()
            proc.wait()
    load = os.getloadavg()[0]
    result["load_1min"] = load
    result["pinned"] = pinned
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if ns.json:
        print(json.dumps(result))
    else:
        _table(result, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())

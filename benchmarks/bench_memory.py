#!/usr/bin/env python3
"""Memory of the whole gateway, every process of it, at rest and with 1000 live tracks (issue 18).

``hilgw run`` is started as a user starts it (its own process, a config
file: one serial radar on a pty, a real mosquitto on 127.0.0.1, ``/metrics``
on a free port) with fusion where ``--worker`` says (the default: its own
worker process). A writer process (benchmarks/bench_latency.py ``--writer``)
paces TRACK_REPORT frames of ``--targets`` stationary targets into the pty.

For the gateway and each of its child processes (the fusion worker), read
from ``/proc/<pid>/smaps_rollup``:

* ``Rss``: resident pages, shared ones counted in every process that maps
  them (the sum over processes counts numpy's and Python's own code twice);
* ``Pss``: each shared page divided among the processes that map it (the
  honest total of several processes);
* ``Private``: Private_Clean + Private_Dirty (what stopping the process frees);
* peak: ``VmHWM`` of ``/proc/<pid>/status`` (the peak resident set).

Phases, each a fresh gateway per ``--rates`` entry:

* ``rest``  : started (``/metrics`` answers, the fusion worker is up), no traffic;
* ``load``  : after ``--seconds`` of reports at the rate (``max`` = as fast as
  the pty takes them), with the live track count read from ``hilgw_tracks``.
  Sampled every 0.5 s; the row is the sample with the largest PSS sum, the
  peak column each process's VmHWM.

Also the fusion backlog counters at the end of the load (``hilgw_fusion_*``:
stale pictures, skipped periods, reports the backlog bound dropped).

    .venv/bin/python benchmarks/bench_memory.py [--rates 10000,max] [--seconds 8] [--worker process] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
LATENCY = ROOT / "benchmarks" / "bench_latency.py"
SENSOR = 7  # the writer's wire sensor id (bench_latency.SENSOR)
_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty", "Swap")


def smaps(pid: int) -> dict[str, float]:
    """Rss, Pss, Private, Swap and peak (VmHWM) of one process, in MB."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in _FIELDS:
            kb[key] = int(rest.split()[0])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            kb["peak"] = int(line.split()[1])
    mb = {k: v / 1024 for k, v in kb.items()}
    return {
        "rss": mb["Rss"],
        "pss": mb["Pss"],
        "private": mb["Private_Clean"] + mb["Private_Dirty"],
        "swap": mb.get("Swap", 0.0),
        "peak_rss": mb["peak"],
    }


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the fusion worker; emulators if any)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as f:
            out += [int(c) for c in f.read().split()]
    return sorted(out)


def _name(pid: int) -> str:
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(c.decode(errors="replace") for c in cmd if c)
    for module, name in (("fusion_worker", "fusion worker"), ("hold_proc", "local hold")):
        if module in text:
            return name
    return text[:40]


def sample(gw_pid: int) -> dict[str, Any]:
    """Memory of the gateway and its children now, per process and summed."""
    procs = {"gateway": smaps(gw_pid)}
    for c in children(gw_pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone since the listing
            name = _name(c)
            procs[name if name in ("fusion worker", "local hold") else f"{name} ({c})"] = smaps(c)
    total = {k: sum(p[k] for p in procs.values()) for k in ("rss", "pss", "private", "swap", "peak_rss")}
    return {"processes": procs, "total": total}


def metrics(port: int) -> dict[str, float]:
    """The gateway's /metrics as {name{labels}: value} (text format, unparsed labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _sum(m: dict[str, float], pattern: str) -> float:
    rx = re.compile(pattern)
    return sum(v for k, v in m.items() if rx.fullmatch(k))


def live_tracks(m: dict[str, float]) -> int:
    return int(_sum(m, r'hilgw_tracks\{status="(tentative|confirmed|coasting)"\}'))


def _config(
    path: Path,
    tty_name: str,
    mqtt_port: int,
    metrics_port: int,
    worker: str,
    backlog: int,
    web_port: int,
    cue: bool = False,
) -> None:
    web = f"\n[web]\nport = {web_port}\n" if web_port else ""
    if cue:
        # The cue path on, no launchers: its modules, its audit log and the
        # local hold switch's own process (gateway/cue/hold_proc.py) are in.
        keys = path.parent / "keys.toml"
        keys.write_text(f'[operator.op-1]\nsecret = "{"11" * 32}"\n[gateway.gw-1]\nsecret = "{"33" * 32}"\n')
        keys.chmod(0o600)
        web += (
            f'\n[cue]\nkeys_file = "{keys}"\naudit_path = "{path.parent / "audit.jsonl"}"\n'
            f'local_hold_socket = "{path.parent / "hold.sock"}"\n'
        )
    path.write_text(
        f"""gateway_id = "bench"
log_level = "WARNING"

[mqtt]
broker = "external"
host = "127.0.0.1"
port = {mqtt_port}

[fusion]
worker = "{worker}"
max_backlog_reports = {backlog}

[metrics]
port = {metrics_port}
{web}
[[devices]]
id = "radar"
protocol = "serial_radar"
wire_sensor_id = {SENSOR}
max_report_age_s = 60.0

[devices.transport]
kind = "serial"
url = "{tty_name}"
baudrate = 921600

[devices.site]
lat_deg = 54.0
lon_deg = 10.0
alt_m = 20.0
"""
    )


def _wait(what: str, ok: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not within {timeout_s:g} s")


def _up(port: int) -> bool:
    try:
        return _sum(metrics(port), r"hilgw_fusion_worker_up\{.*\}") >= 1
    except OSError:
        return False


def _page(port: int, stop: threading.Event, sizes: list[int]) -> None:
    """An open situation-display page, roughly: its snapshot twice a second."""
    while not stop.wait(0.5):
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/state.json", timeout=10) as r,
        ):
            sizes.append(len(r.read()))


def run(
    rate: float,
    seconds: float,
    targets: int,
    worker: str,
    backlog: int,
    mqtt_port: int,
    env: dict[str, str],
    web: bool = False,
    cue: bool = False,
) -> dict[str, Any]:
    """One gateway: rest, then load at ``rate`` (0: unpaced); returns both samples."""
    from tests.conftest import free_port

    master, slave = os.openpty()
    tty.setraw(slave)
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gw.toml"
        web_port = free_port() if web else 0
        _config(cfg, os.ttyname(slave), mqtt_port, metrics_port, worker, backlog, web_port, cue)
        stop_page = threading.Event()
        page_sizes: list[int] = []
        page = threading.Thread(target=_page, args=(web_port, stop_page, page_sizes), daemon=True)
        gw = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from gateway.cli import main; sys.exit(main())",
                "run",
                "--config",
                str(cfg),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        writer: subprocess.Popen[str] | None = None
        try:
            _wait("gateway start", lambda: _up(metrics_port), 60.0)
            time.sleep(2.0)  # settle: the first periods, the broker session
            rest = sample(gw.pid)
            rest["live_tracks"] = live_tracks(metrics(metrics_port))
            writer = subprocess.Popen(
                [
                    sys.executable,
                    # Paced: frames stamped as they are written, so a run longer than
                    # max_report_age_s keeps its tracks; unpaced: bench_latency's
                    # pre-encoded frames (the encoder must not be the limit).
                    str(LATENCY if rate <= 0 else Path(__file__).resolve()),
                    "--writer",
                    str(master),
                    str(rate),
                    str(seconds),
                    str(targets),
                ],
                pass_fds=(master,),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert writer.stdin is not None
            assert writer.stdout is not None
            writer.stdout.readline()  # "ready": frames encoded
            writer.stdin.write("go\n")
            writer.stdin.flush()
            if web:
                page.start()
            best: dict[str, Any] | None = None
            tracks_max = backlog_max = mqtt_max = 0.0
            while writer.poll() is None:
                time.sleep(0.5)
                s = sample(gw.pid)
                m = metrics(metrics_port)
                s["live_tracks"] = live_tracks(m)
                tracks_max = max(tracks_max, s["live_tracks"])
                backlog_max = max(backlog_max, _sum(m, "hilgw_fusion_backlog_reports"))
                mqtt_max = max(mqtt_max, _sum(m, "hilgw_mqtt_queue_depth"))
                if best is None or s["total"]["pss"] > best["total"]["pss"]:
                    best = s
            sent = int((writer.stdout.read() or "0").strip() or 0)
            stop_page.set()
            end = sample(gw.pid)
            m = metrics(metrics_port)
            end["live_tracks"] = live_tracks(m)
            if best is None or end["total"]["pss"] > best["total"]["pss"]:
                best = end
            load = best
            load["live_tracks_max"] = max(int(tracks_max), end["live_tracks"])
            counters = {
                "reports_sent": sent,
                "device_reports": _sum(m, r"hilgw_device_reports(_total)?\{.*\}"),
                "device_drops": _sum(m, r"hilgw_device_drops(_total)?\{.*\}"),
                "queue_drops": _sum(m, r"hilgw_queue_drops(_total)?\{.*\}"),
                "pictures_stale": _sum(m, r"hilgw_fusion_pictures_stale(_total)?"),
                "ticks_skipped": _sum(m, r"hilgw_fusion_ticks_skipped(_total)?"),
                "backlog_dropped": _sum(m, r"hilgw_fusion_backlog_dropped_reports(_total)?"),
                "backlog_reports_max": backlog_max,
                "mqtt_queue_max": mqtt_max,
                "page_json_mb_max": max(page_sizes, default=0) / 1e6,
            }
        finally:
            stop_page.set()
            if writer is not None and writer.poll() is None:
                writer.kill()
                writer.wait()
            gw.send_signal(signal.SIGINT)
            try:
                gw.wait(20)
            except subprocess.TimeoutExpired:
                gw.kill()
                gw.wait()
            os.close(master)
            os.close(slave)
    return {
        "rate": "max" if rate <= 0 else int(rate),
        "worker": worker,
        "rest": rest,
        "load": load,
        **counters,
    }


def _rows(r: dict[str, Any]) -> list[tuple[str, str, dict[str, float], str]]:
    out = []
    for phase in ("rest", "load"):
        s = r[phase]
        tracks = str(s.get("live_tracks", ""))
        for name, p in s["processes"].items():
            out.append((phase, name, p, tracks))
        out.append((phase, "sum", s["total"], tracks))
    return out


def _writer(fd: int, rate: float, seconds: float, targets: int) -> None:
    """Paced TRACK_REPORT frames of ``targets`` stationary targets into the pty,
    each 10 ms block encoded when it is due (sensor time = now)."""
    import numpy as np

    from benchmarks.bench_latency import polar_reports
    from drivers.base import Role
    from drivers.radar import TRACK_BATCH_DTYPE
    from drivers.serial_radar import SerialRadarCodec

    rng = np.random.default_rng(3)  # the targets of bench_latency's writer
    rng_range = rng.uniform(20e3, 150e3, targets)
    rng_az = rng.uniform(-1.2, 1.2, targets)
    rng_el = rng.uniform(0.01, 0.2, targets)
    codec = SerialRadarCodec(Role.DEVICE, sensor_id=SENSOR)
    os.set_blocking(fd, True)
    block = max(1, int(rate / 100))
    print("ready", flush=True)
    sys.stdin.readline()  # go
    t0 = time.monotonic()
    sent = 0
    for k in range(int(rate * seconds / block)):
        delay = t0 + k * block / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        idx = (sent + np.arange(block)) % targets
        a = polar_reports(idx, (rng_range, rng_az, rng_el), rng, TRACK_BATCH_DTYPE)
        view = memoryview(codec.encode_track_batch(a))
        while view:
            view = view[os.write(fd, view) :]
        sent += block
    print(sent, flush=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        _writer(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="10000,max", help="reports/s, comma-separated; max = unpaced")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--worker", default="process", choices=("process", "thread", "inline"))
    ap.add_argument(
        "--max-backlog-reports", type=int, default=20_000, help="[fusion] max_backlog_reports (the default)"
    )
    ap.add_argument("--malloc-arena-max", type=int, default=None, help="MALLOC_ARENA_MAX for the gateway")
    ap.add_argument(
        "--web",
        action="store_true",
        help="[web] on, a page open (state.json at 2 Hz): trails of history_s = 60 s",
    )
    ap.add_argument(
        "--cue", action="store_true", help="[cue] on (no launchers): the hold switch's process too"
    )
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    mosq = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if mosq is None:
        print("mosquitto not installed: nothing measured", file=sys.stderr)
        return 2
    from tests.conftest import start_mosquitto

    env = dict(os.environ)
    if ns.malloc_arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(ns.malloc_arena_max)
    results = []
    for r in ns.rates.split(","):
        rate = 0.0 if r.strip() == "max" else float(r)
        with tempfile.TemporaryDirectory() as tmp:
            broker = start_mosquitto(Path(tmp))
            port = broker.port
            try:
                results.append(
                    run(
                        rate,
                        ns.seconds,
                        ns.targets,
                        ns.worker,
                        ns.max_backlog_reports,
                        port,
                        env,
                        ns.web,
                        ns.cue,
                    )
                )
            finally:
                broker.stop()
    load = os.getloadavg()[0]
    head = {
        "load_1min": load,
        "seconds": ns.seconds,
        "targets": ns.targets,
        "worker": ns.worker,
        "max_backlog_reports": ns.max_backlog_reports,
    }
    if ns.malloc_arena_max is not None:
        head["malloc_arena_max"] = ns.malloc_arena_max
    if ns.json:
        print(json.dumps({**head, "runs": results}))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"hilgw run, every process (MB; worker {ns.worker}, load {load:.1f})")
    for col in ("rate", "phase", "process", "RSS", "PSS", "private", "peak RSS", "live tracks"):
        t.add_column(col, justify="right")
    for res in results:
        for phase, name, p, tracks in _rows(res):
            bold = name == "sum"
            fmt = (lambda v: f"[bold]{v:.1f}[/bold]") if bold else (lambda v: f"{v:.1f}")
            t.add_row(
                str(res["rate"]),
                phase,
                name,
                fmt(p["rss"]),
                fmt(p["pss"]),
                fmt(p["private"]),
                fmt(p["peak_rss"]),
                tracks,
            )
    Console(width=140).print(t)
    for res in results:
        print(
            f"rate {res['rate']}: sent {res['reports_sent']:,}, reports {res['device_reports']:,.0f}, "
            f"device drops {res['device_drops']:.0f}, queue drops {res['queue_drops']:.0f}, "
            f"stale pictures {res['pictures_stale']:.0f}, skipped periods {res['ticks_skipped']:.0f}, "
            f"fusion backlog max {res['backlog_reports_max']:,.0f} reports, "
            f"dropped {res['backlog_dropped']:,.0f}, "
            f"MQTT queue max {res['mqtt_queue_max']:,.0f}, live tracks max {res['load']['live_tracks_max']}"
            + (f", display snapshot max {res['page_json_mb_max']:.1f} MB" if ns.web else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

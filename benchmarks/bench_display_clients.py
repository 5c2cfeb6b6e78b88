"""The situation display under 1,000 pages of which 10 never read (issue 23, item 4).

Starts ``hilgw run`` (the bundled emulated demo, no MQTT, display and
/metrics on free 127.0.0.1 ports) as a child process, opens ``--clients``
WebSockets to its display, ``--stalled`` of which complete the handshake with
a 2 KiB receive buffer and then never read, and for ``--duration`` seconds:

* every reading page notes the delay of each snapshot (its receipt time minus
  the snapshot's ``sent_ns``, one host clock);
* ``/healthz`` is asked twice a second (status and answer time);
* the gateway's RSS and open file descriptors are sampled once a second.

The soft RLIMIT_NOFILE of this process is raised to ``--nofile`` (default
8192, at most the hard limit) before the gateway starts, so that both this
process (1,000 client sockets) and the gateway (which inherits it) have room;
the gateway's display is configured with ``max_clients = clients + 100``.

    .venv/bin/python benchmarks/bench_display_clients.py [--clients 1000] [--stalled 10]
        [--duration 60] [--json]

Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ws_clients import ReadingClient, stalled_client, track_batch  # noqa: E402

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


async def _healthz_ms(session: aiohttp.ClientSession, port: int) -> float:
    """One /healthz answer time (ms; inf when not 200 within 5 s), then 0.5 s."""
    t = time.perf_counter()
    try:
        async with asyncio.timeout(5.0), session.get(f"http://{HOST}:{port}/healthz") as resp:
            ms = (time.perf_counter() - t) * 1e3 if resp.status == 200 else math.inf
    except (TimeoutError, aiohttp.ClientError):
        ms = math.inf
    await asyncio.sleep(0.5)
    return ms


async def _wait_healthz(session: aiohttp.ClientSession, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            async with session.get(f"http://{HOST}:{port}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("gateway not healthy within 90 s")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def worker(port: int, clients: int, start: float, duration: float) -> dict[str, Any]:
    """Open ``clients`` reading pages; from ``start`` (epoch s) for ``duration``
    seconds note the delay of every snapshot; return them as JSON-ready values."""
    readers = [ReadingClient() for _ in range(clients)]
    stop = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = []
        for i in range(0, clients, 25):  # open in groups: a handshake storm is not the test
            tasks += [asyncio.create_task(r.run(session, HOST, port, stop)) for r in readers[i : i + 25]]
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, start - time.time()))
        for r in readers:
            r.delays_s.clear()
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.gather(*tasks)
    return {
        "cpu_s": time.process_time(),
        "delays": [round(d, 5) for r in readers for d in r.delays_s],
        "received": [len(r.delays_s) for r in readers],
        "closed": sum(r.closed is not None for r in readers),
    }


async def serve(config: Path, tracks: int) -> None:
    """The synthetic source: a gateway (display and /metrics, no devices) and
    a picture of ``tracks`` tracks published five times a second (positions
    move, update times do not: the trails stay one point long)."""
    from gateway.config import load_config
    from gateway.supervisor import Gateway

    async with Gateway(load_config(config)) as gw:
        batch = track_batch(tracks, "bench-display")
        while True:
            for t in batch.tracks:
                t.state.x += 20.0
            batch.time_ns = time.time_ns()
            batch.batch_sequence += 1
            gw.tracks.publish(batch)
            await asyncio.sleep(0.2)


async def bench(
    clients: int, stalled: int, duration: float, nofile: int, n_workers: int, source: str, tracks: int
) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    web_port, metrics_port = _free_port(), _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-display-"))
    cfg = tmp / "display.toml"
    # demo: two of the demo's radars emulated (a live picture, without six
    # emulators starting at once). synthetic: no devices; a picture of
    # --tracks tracks published five times a second by the child itself, for
    # a machine so loaded that emulators miss their 10 s start-up time.
    emulation = (
        '[emulation]\nscenario = "builtin:demo"\ntransport = "pty"\nonly = ["radar-fwd", "radar-rear"]\n'
    )
    cfg.write_text(
        'gateway_id = "bench-display"\n[mqtt]\nenabled = false\n'
        + (emulation if source == "demo" else "[fusion]\npublish_hz = 0.01\n")
        + f'[web]\nhost = "{HOST}"\nport = {web_port}\nmax_clients = {clients + 100}\n'
        f'[metrics]\nhost = "{HOST}"\nport = {metrics_port}\n'
    )
    log = (tmp / "gateway.log").open("wb")
    if source == "demo":
        argv = ["-m", "gateway.cli", "run", "--config", str(cfg), "--no-live", "--log-level", "WARNING"]
    else:
        argv = [__file__, "--serve", str(cfg), "--tracks", str(tracks)]
    proc = subprocess.Popen(  # noqa: ASYNC220  # once, before the loop has anything else to do
        [sys.executable, *argv],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stop = asyncio.Event()
    health_ms: list[float] = []
    health_bad = 0
    rss: list[float] = []
    fds: list[int] = []
    cpu: list[float] = []
    workers: list[asyncio.subprocess.Process] = []
    outputs: list[bytes] = []
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_healthz(session, metrics_port, proc)
            rss_idle = _rss_mb(proc.pid)
            # The same /healthz poll with no page open: what the machine's own
            # load does to the answer time, to read the loaded figure against.
            idle_ms = [await _healthz_ms(session, metrics_port) for _ in range(20)]
            # The reading pages live in worker processes, so that reading 1,000
            # sockets in one Python loop is not what the delays measure.
            t_start = time.time() + 8.0 + (clients - stalled) / 100  # all connected by then
            share = [
                (clients - stalled) // n_workers + (i < (clients - stalled) % n_workers)
                for i in range(n_workers)
            ]
            for n in share:
                workers.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, __file__, "--worker", "--port", str(web_port), "--clients", str(n),
                        "--start", str(t_start), "--duration", str(duration),
                        stdout=asyncio.subprocess.PIPE,
                    )
                )  # fmt: skip
            socks = [await stalled_client(HOST, web_port) for _ in range(stalled)]
            await asyncio.sleep(max(0.0, t_start - time.time()))
            rss_connected = _rss_mb(proc.pid)
            cpu0, t0 = _cpu_s(proc.pid), time.monotonic()
            next_sample = t0
            while (now := time.monotonic()) < t0 + duration:
                if now >= next_sample:
                    rss.append(_rss_mb(proc.pid))
                    fds.append(_fds(proc.pid))
                    next_sample += 1.0
                ms = await _healthz_ms(session, metrics_port)
                health_ms.append(min(ms, 5000.0))
                health_bad += math.isinf(ms)
            cpu.append((_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0))
            outputs = [(await w.communicate())[0] for w in workers]
            async with session.get(f"http://{HOST}:{metrics_port}/metrics") as resp:
                metrics = await resp.text()
            for s in socks:
                s.close()
    finally:
        stop.set()
        for w in workers:
            if w.returncode is None:
                w.kill()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    parts = [json.loads(o) for o in outputs]
    all_delays = [d for part in parts for d in part["delays"]]
    received = np.array([n for part in parts for n in part["received"]])
    closed = sum(part["closed"] for part in parts)
    delays = np.array(all_delays)
    return {
        "clients": clients,
        "stalled": stalled,
        "duration_s": duration,
        "nofile_soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "client_processes": n_workers,
        "source": source if source == "demo" else f"synthetic, {tracks} tracks",
        "updates_received": int(delays.size),
        "updates_per_reader_min": int(received.min()) if received.size else 0,
        "delay_p50_s": round(float(np.percentile(delays, 50)), 4) if delays.size else None,
        "delay_p99_s": round(float(np.percentile(delays, 99)), 4) if delays.size else None,
        "delay_max_s": round(float(delays.max()), 4) if delays.size else None,
        "readers_closed": closed,
        "dropped_slow": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="slow"}'),
        "dropped_send_timeout": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="send_timeout"}'),
        "dropped_send_error": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="send_error"}'),
        "dropped_no_pong": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="no_pong"}'),
        "refused_limit": _metric(metrics, 'hilgw_web_requests_refused_total{reason="limit"}'),
        "healthz_asked": len(health_ms),
        "healthz_not_200": health_bad,
        "healthz_p99_ms": round(float(np.percentile(health_ms, 99)), 1) if health_ms else None,
        "healthz_p50_ms": round(float(np.percentile(health_ms, 50)), 1) if health_ms else None,
        "healthz_idle_p50_ms": round(float(np.percentile(np.minimum(idle_ms, 5000.0), 50)), 1),
        "healthz_idle_p99_ms": round(float(np.percentile(np.minimum(idle_ms, 5000.0), 99)), 1),
        "gateway_cpu_percent": round(cpu[0] * 100, 1) if cpu else None,
        # All client processes together, over their whole life (connecting included).
        "clients_cpu_s": round(sum(part["cpu_s"] for part in parts), 1),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "gateway_fds_max": max(fds) if fds else None,
        "gateway_rss_idle_mb": round(rss_idle, 1),
        "gateway_rss_connected_mb": round(rss_connected, 1),
        "gateway_rss_max_mb": round(max(rss), 1) if rss else None,
        "gateway_rss_end_mb": round(rss[-1], 1) if rss else None,
        "gateway_exit": proc.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--stalled", type=int, default=10, help="of the clients, how many never read")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument(
        "--nofile", type=int, default=8192, help="soft RLIMIT_NOFILE to set (at most the hard one)"
    )
    ap.add_argument("--workers", type=int, default=4, help="processes the reading pages are spread over")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ap.add_argument("--source", choices=["demo", "synthetic"], default="demo", help="what the picture shows")
    ap.add_argument("--tracks", type=int, default=20, help="tracks of the synthetic picture")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=float, help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(ns.serve, ns.tracks))
        return 0
    if ns.worker:
        print(json.dumps(asyncio.run(worker(ns.port, ns.clients, ns.start, ns.duration))))
        return 0
    res = asyncio.run(bench(ns.clients, ns.stalled, ns.duration, ns.nofile, ns.workers, ns.source, ns.tracks))
    if ns.json:
        print(json.dumps(res))
    else:
        for key, value in res.items():
            print(f"{key:<26} {value}")
    ok = (
        res["delay_p99_s"] is not None
        and res["delay_p99_s"] <= 1.0
        and res["healthz_not_200"] == 0
        and res["readers_closed"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

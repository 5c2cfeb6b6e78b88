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
import json
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

from tests.ws_clients import ReadingClient, stalled_client  # noqa: E402

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


async def bench(clients: int, stalled: int, duration: float, nofile: int) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    web_port, metrics_port = _free_port(), _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-display-"))
    cfg = tmp / "display.toml"
    cfg.write_text(
        f'gateway_id = "bench-display"\n[mqtt]\nenabled = false\n'
        # Two of the demo's radars: a live picture, without six emulators starting at once.
        f'[emulation]\nscenario = "builtin:demo"\ntransport = "pty"\nonly = ["radar-fwd", "radar-rear"]\n'
        f'[web]\nhost = "{HOST}"\nport = {web_port}\nmax_clients = {clients + 100}\n'
        f'[metrics]\nhost = "{HOST}"\nport = {metrics_port}\n'
    )
    log = (tmp / "gateway.log").open("wb")
    argv = ["run", "--config", str(cfg), "--no-live", "--log-level", "WARNING"]
    proc = subprocess.Popen(  # noqa: ASYNC220  # once, before the loop has anything else to do
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    readers = [ReadingClient() for _ in range(clients - stalled)]
    stop = asyncio.Event()
    health_ms: list[float] = []
    health_bad = 0
    rss: list[float] = []
    fds: list[int] = []
    conn = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=conn) as session:
            await _wait_healthz(session, metrics_port, proc)
            rss_idle = _rss_mb(proc.pid)
            tasks = []
            for i in range(0, len(readers), 50):  # open in groups: a handshake storm is not the test
                tasks += [
                    asyncio.create_task(r.run(session, HOST, web_port, stop)) for r in readers[i : i + 50]
                ]
                await asyncio.sleep(0.05)
            socks = [await stalled_client(HOST, web_port) for _ in range(stalled)]
            await asyncio.sleep(2.0)  # every page has its first picture
            rss_connected = _rss_mb(proc.pid)
            for r in readers:
                r.delays_s.clear()
            t0 = time.monotonic()
            next_sample = t0
            while (now := time.monotonic()) < t0 + duration:
                if now >= next_sample:
                    rss.append(_rss_mb(proc.pid))
                    fds.append(_fds(proc.pid))
                    next_sample += 1.0
                t = time.perf_counter()
                try:
                    async with (
                        asyncio.timeout(5.0),
                        session.get(f"http://{HOST}:{metrics_port}/healthz") as resp,
                    ):
                        ok = resp.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                health_ms.append((time.perf_counter() - t) * 1e3)
                health_bad += not ok
                await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
            async with session.get(f"http://{HOST}:{metrics_port}/metrics") as resp:
                metrics = await resp.text()
            for s in socks:
                s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    delays = np.array([d for r in readers for d in r.delays_s])
    received = np.array([len(r.delays_s) for r in readers])
    return {
        "clients": clients,
        "stalled": stalled,
        "duration_s": duration,
        "nofile_soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "updates_received": int(delays.size),
        "updates_per_reader_min": int(received.min()) if received.size else 0,
        "delay_p50_s": round(float(np.percentile(delays, 50)), 4) if delays.size else None,
        "delay_p99_s": round(float(np.percentile(delays, 99)), 4) if delays.size else None,
        "delay_max_s": round(float(delays.max()), 4) if delays.size else None,
        "readers_closed": sum(r.closed is not None for r in readers),
        "dropped_slow": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="slow"}'),
        "dropped_send_timeout": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="send_timeout"}'),
        "dropped_send_error": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="send_error"}'),
        "dropped_no_pong": _metric(metrics, 'hilgw_web_clients_dropped_total{reason="no_pong"}'),
        "refused_limit": _metric(metrics, 'hilgw_web_requests_refused_total{reason="limit"}'),
        "healthz_asked": len(health_ms),
        "healthz_not_200": health_bad,
        "healthz_p99_ms": round(float(np.percentile(health_ms, 99)), 1) if health_ms else None,
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
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ns = ap.parse_args(argv)
    res = asyncio.run(bench(ns.clients, ns.stalled, ns.duration, ns.nofile))
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

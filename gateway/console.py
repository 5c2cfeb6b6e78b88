"""``hilgw run``: the gateway in the foreground with a live terminal summary.

On a terminal the summary is a rich table refreshed twice a second (devices
with state, frame and report rates and drops by reason; the track picture;
MQTT). Elsewhere (a service, a pipe) the same figures are logged every 5 s.

Under systemd (``Type=notify``, deploy/systemd/hilgw.service) the gateway
says READY=1 once it has started, STATUS= with the summary line, WATCHDOG=1
at half of ``$WATCHDOG_USEC`` while :class:`Liveness` finds it healthy, and
STOPPING=1 on shutdown (gateway/sdnotify.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from gateway.config import GatewayConfig
from gateway.fusion.api import STATUS_COASTING, STATUS_CONFIRMED, STATUS_TENTATIVE
from gateway.health import DeviceStats
from gateway.sdnotify import Notifier, watchdog_period_s
from gateway.supervisor import Gateway
from hilgw.v1 import health_pb2

if TYPE_CHECKING:
    from rich.console import Group

log = logging.getLogger("hilgw")


class Rates:
    """Per-device frame and report rates over the last refresh interval."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int, int]] = {}

    def update(self, gw: Gateway) -> dict[str, tuple[float, float]]:
        now = time.monotonic()
        out = {}
        for dev_id, st in gw.stats.items():
            t0, f0, r0 = self._last.get(dev_id, (now, st.frames_in, st.reports_out))
            dt = max(now - t0, 1e-9)
            out[dev_id] = ((st.frames_in - f0) / dt, (st.reports_out - r0) / dt) if now > t0 else (0.0, 0.0)
            self._last[dev_id] = (now, st.frames_in, st.reports_out)
        return out


def _picture_counts(gw: Gateway) -> tuple[int, int, int]:
    c = gw.fusion.counts()
    return c.get(STATUS_CONFIRMED, 0), c.get(STATUS_TENTATIVE, 0), c.get(STATUS_COASTING, 0)


def render(gw: Gateway, rates: dict[str, tuple[float, float]]) -> Group:
    # rich only here and for the live view: a gateway without a terminal
    # (systemd, a container) never imports it (~4 MB, issue 18).
    from rich.console import Group
    from rich.table import Table

    links = "  ".join(f"{name} http://{ep.host}:{ep.port}/" for name, ep in sorted(gw.endpoints.items()))
    devs = Table(title=f"hilgw {gw.config.gateway_id}: devices", caption=links or None, expand=False)
    for col in ("device", "state", "frames/s", "reports/s", "frames", "drops", "detail"):
        devs.add_column(col)
    for dev_id, st in gw.stats.items():
        fr, rr = rates.get(dev_id, (0.0, 0.0))
        drops = ", ".join(f"{k}={v}" for k, v in sorted(st.drops.items())) or "0"
        state = health_pb2.DeviceState.Name(st.state).removeprefix("DEVICE_STATE_")  # type: ignore[arg-type]
        devs.add_row(dev_id, state, f"{fr:.1f}", f"{rr:.1f}", str(st.frames_in), drops, st.detail[:60])
        # The radars of a multi-source stream (issue 22), and the ids it carries that no source names.
        for name, src in st.sources.items():
            sdrops = ", ".join(f"{k}={v}" for k, v in sorted(src.drops.items())) or "0"
            sstate = health_pb2.DeviceState.Name(src.state).removeprefix("DEVICE_STATE_")  # type: ignore[arg-type]
            devs.add_row(f"  {name}", sstate, "", "", str(src.records_in), sdrops, src.detail[:60])
        if st.unknown_sources:
            seen = ", ".join(f"{i} ({n})" for i, n in sorted(st.unknown_sources.items()))
            devs.add_row("  unknown", "", "", "", str(sum(st.unknown_sources.values())), "", seen[:60])
    conf, tent, coast = _picture_counts(gw)
    pic = Table(title="track picture and outputs", expand=False)
    for col in (
        "confirmed",
        "tentative",
        "coasting",
        "fusion step",
        "mqtt",
        "published",
        "queued",
        "mqtt drops",
    ):
        pic.add_column(col)
    steps = gw.fusion.step_seconds
    step = f"{1e3 * sorted(steps)[len(steps) // 2]:.2f} ms" if steps else "-"
    m = gw.mqtt
    pic.add_row(
        str(conf),
        str(tent),
        str(coast),
        step,
        ("up" if m.connected else "down") + f" :{gw.mqtt_port}" if m else "off",
        str(sum(m.published.values())) if m else "-",
        str(m.queued) if m else "-",
        str(sum(m.dropped.values())) if m else "-",
    )
    return Group(devs, pic)


def _sources_text(st: DeviceStats) -> str:
    """``[r1=UP r2=DOWN unknown=99.9]``: the sources of a multi-source device, as seen."""
    if not st.sources and not st.unknown_sources:
        return ""
    parts = [
        f"{n}={health_pb2.DeviceState.Name(s.state).removeprefix('DEVICE_STATE_')}"  # type: ignore[arg-type]
        for n, s in st.sources.items()
    ]
    if st.unknown_sources:
        parts.append("unknown=" + ",".join(sorted(st.unknown_sources)))
    return "[" + " ".join(parts) + "]"


def summary_line(gw: Gateway, rates: dict[str, tuple[float, float]]) -> str:
    conf, tent, coast = _picture_counts(gw)
    devs = " ".join(
        f"{d}={health_pb2.DeviceState.Name(st.state).removeprefix('DEVICE_STATE_')}"  # type: ignore[arg-type]
        f"/{rates.get(d, (0.0, 0.0))[0]:.1f}fps/drops={sum(st.drops.values())}{_sources_text(st)}"
        for d, st in gw.stats.items()
    )
    mq = f"mqtt={'up' if gw.mqtt and gw.mqtt.connected else 'down'}"
    if gw.mqtt:
        mq += f" published={sum(gw.mqtt.published.values())} queued={gw.mqtt.queued}"
    return f"tracks confirmed={conf} tentative={tent} coasting={coast} | {devs} | {mq}"


_DOWN = (health_pb2.DEVICE_STATE_DOWN, health_pb2.DEVICE_STATE_RESTARTING)


class Liveness:
    """Whether the gateway has earned its next WATCHDOG=1 ping.

    Healthy means: the event loop runs (this is checked at all), every
    supervisor task is still alive (they restart their work themselves, so a
    finished one means the supervisor itself broke), and not *every* device
    has been DOWN/RESTARTING for longer than ``all_down_s``. That last rule is
    deliberately loose: one dead sensor is the supervisor's business (it
    restarts it with back-off and reports it), while all of them dead for
    minutes is worth a clean process restart by systemd. A gateway without
    devices is judged by its tasks alone.
    """

    def __init__(self, all_down_s: float = 120.0) -> None:
        self.all_down_s = all_down_s
        self._all_down_since: float | None = None

    def problem(self, gw: Gateway, now_mono: float) -> str | None:
        """None when healthy, else why not (for the log and STATUS=)."""
        dead = [t.get_name() for t in gw.task_list if t.done()]
        if dead:
            return f"supervisor task(s) ended: {', '.join(dead)}"
        looping = gw.task_health.problem(now_mono)
        if looping is not None:  # restarted, so alive, but not healthy (issue 15)
            return looping
        states = [st.state for st in gw.stats.values()]
        if states and all(s in _DOWN for s in states):
            if self._all_down_since is None:
                self._all_down_since = now_mono
            elif now_mono - self._all_down_since > self.all_down_s:
                return f"all {len(states)} device(s) down for {now_mono - self._all_down_since:.0f} s"
        else:
            self._all_down_since = None
        return None


async def _watchdog(gw: Gateway, notifier: Notifier, period_s: float, liveness: Liveness) -> None:
    """Ping systemd every ``period_s`` while healthy; once unhealthy, stay quiet
    so systemd's WatchdogSec expires and it restarts the service."""
    silent = False
    while True:
        why = liveness.problem(gw, time.monotonic())
        if why is None:
            notifier.watchdog()
            silent = False
        elif not silent:
            log.error("watchdog: withholding WATCHDOG=1: %s", why)
            notifier.status(f"unhealthy: {why}")
            silent = True
        await asyncio.sleep(period_s)


async def run_gateway(
    config: GatewayConfig, duration_s: float | None = None, live: bool | None = None
) -> int:
    """Run until SIGINT/SIGTERM (or ``duration_s``); returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    hits = [0]

    def on_signal(signum: int) -> None:
        hits[0] += 1
        if hits[0] > 1:  # a second signal: the operator means it
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, int(sig))
    if live is None:
        live = sys.stdout.isatty()
    rates = Rates()
    notifier = Notifier()
    pinger: asyncio.Task[None] | None = None
    async with Gateway(config) as gw:
        try:
            notifier.ready(f"gateway {config.gateway_id}: {len(gw.devices)} device(s)")
            period = watchdog_period_s()
            if notifier.enabled and period is not None:
                pinger = asyncio.create_task(_watchdog(gw, notifier, period, Liveness()), name="watchdog")
            deadline = None if duration_s is None else time.monotonic() + duration_s
            if live:
                from rich.console import Console
                from rich.live import Live

                with Live(render(gw, {}), console=Console(), refresh_per_second=2, transient=False) as view:
                    while not await _wait(stop, deadline, 0.5):
                        view.update(render(gw, rates.update(gw)))
            else:
                while not await _wait(stop, deadline, 5.0):
                    line = summary_line(gw, rates.update(gw))
                    log.info("%s", line)
                    notifier.status(line)
            log.info("stopping: %s", summary_line(gw, rates.update(gw)))
        finally:
            # Before the (bounded) shutdown: systemd then knows the stop is ours.
            notifier.stopping("stopping")
            if pinger is not None:
                pinger.cancel()
    notifier.close()
    return 0


async def _wait(stop: asyncio.Event, deadline: float | None, period: float) -> bool:
    """Wait one period; True when it is time to stop."""
    if deadline is not None:
        period = min(period, max(deadline - time.monotonic(), 0.0))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(period):  # not wait_for: it can swallow a cancel on 3.11
            await stop.wait()
    return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

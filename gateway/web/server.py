"""The built-in situation display: one self-contained page and a WebSocket
(docs/operations.md, "Situation display").

The page (``static/``: HTML, vanilla JS drawing on a canvas, CSS) loads nothing
from outside the gateway, so it works on an air-gapped site. The server keeps
the last picture, a position trail per track and the last health of each
device, and pushes one JSON snapshot ``update_hz`` times a second to every
open page. Positions go out as WGS-84 latitude/longitude/altitude
(converted in one vectorised call per picture), because that is what a map
wants; the bus and MQTT keep ECEF.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pymap3d
from aiohttp import WSMsgType, web

from gateway.config import WebConfig
from gateway.web.endpoint import HttpEndpoint
from gateway.web.security import HostGuard, add_security_headers
from hilgw.v1 import health_pb2, track_pb2

if TYPE_CHECKING:
    from gateway.running import RunningGateway

__all__ = ["SituationDisplay", "start_web_server"]

log = logging.getLogger(__name__)

_STATUS = {1: "tentative", 2: "confirmed", 3: "coasting", 4: "dropped"}
_STATIC = {
    "/": ("index.html", "text/html"),
    "/display.js": ("display.js", "text/javascript"),
    "/display.css": ("display.css", "text/css"),
}


def _state_name(state: int) -> str:
    return health_pb2.DeviceState.Name(state).removeprefix("DEVICE_STATE_")  # type: ignore[arg-type]  # int is the wire value


class SituationDisplay:
    """Keeps the display state and pushes it to the open pages.

    ``authority`` and ``cues`` are what the page shows for the cue path:
    "HOLD" and an empty list until the cue path sets them (a list of dicts
    with ``cue_id``, ``launcher_id``, ``track_id``, ``status``); the
    supervisor sets them on every change (``CuePath.on_state``).
    """

    def __init__(self, gw: RunningGateway, config: WebConfig) -> None:
        self.gw = gw
        self.config = config
        self._tracks = gw.tracks.subscribe("web", maxsize=8)
        self.authority = "HOLD"
        self.cues: list[dict[str, Any]] = []
        self.tracks: list[dict[str, Any]] = []
        self.picture_time_ns = 0
        self.batch_sequence = 0
        self._trails: dict[int, _Trail] = {}
        self._clients: set[_Client] = set()
        self._opening = 0  # handshakes under way, counted against max_clients
        self._sensors: list[dict[str, Any]] | None = None
        self.max_clients = config.max_clients
        self.guard = HostGuard(config.host, config.allowed_hosts)
        self.sent = 0
        self.snapshot_errors = 0
        #: Pages dropped by reason: slow (queue full), send_timeout, send_error, no_pong.
        self.dropped: Counter[str] = Counter()

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def refused(self) -> Counter[str]:
        """Requests refused by reason: limit (503), host, origin (403)."""
        return self.guard.refused

    # --- state ------------------------------------------------------------------

    def sensors(self) -> list[dict[str, Any]]:
        """Sensor sites, with coverage where the scenario of the emulated
        bench gives it (a real device's config carries no coverage)."""
        if self._sensors is not None:
            return self._sensors
        # Bench mode: the scenario's coverage, as the emulators' plan gave it
        # (gateway/emulation.py); a real device's config carries none.
        emu = self.gw.emulation
        coverage: dict[str, dict[str, float]] = emu.coverage if emu is not None else {}
        out = []
        for dev in self.gw.devices:
            if dev.site is None:
                continue
            s = dev.site
            cov = coverage.get(dev.id)
            if cov is not None:  # the sector is in the site frame: turn it by the site's yaw
                cov = {**cov, "az_center_deg": (cov["az_center_deg"] + s.yaw_deg) % 360.0}
            out.append({"id": dev.id, "lat": s.lat_deg, "lon": s.lon_deg, "alt": s.alt_m, "coverage": cov})
        self._sensors = out
        return out

    def take_picture(self, batch: track_pb2.TrackBatch) -> None:
        """Convert one TrackBatch for the page and extend the trails."""
        n = len(batch.tracks)
        self.picture_time_ns = batch.time_ns
        self.batch_sequence = batch.batch_sequence
        if n == 0:
            self.tracks = []
        else:
            xyz = np.array([(t.state.x, t.state.y, t.state.z) for t in batch.tracks], np.float64)
            vel = np.array([(t.state.vx, t.state.vy, t.state.vz) for t in batch.tracks], np.float64)
            lat, lon, alt = pymap3d.ecef2geodetic(xyz[:, 0], xyz[:, 1], xyz[:, 2])
            east, north, up = pymap3d.ecef2enuv(vel[:, 0], vel[:, 1], vel[:, 2], lat, lon)
            speed = np.sqrt(east**2 + north**2 + up**2)
            course = np.degrees(np.arctan2(east, north)) % 360.0
            rows = zip(
                batch.tracks,
                lat.tolist(),
                lon.tolist(),
                alt.tolist(),
                speed.tolist(),
                course.tolist(),
                up.tolist(),
                strict=True,
            )
            tracks = []
            for t, la, lo, al, sp, co, vu in rows:
                trail = self._trails.get(t.track_id)
                if trail is None:
                    trail = self._trails[t.track_id] = _Trail()
                if trail.last_time() != t.last_update_time_ns:
                    trail.append(t.last_update_time_ns, la, lo)
                tracks.append(
                    {
                        "id": t.track_id,
                        "status": _STATUS.get(t.status, str(t.status)),
                        "lat": la,
                        "lon": lo,
                        "alt": al,
                        "speed": sp,
                        "course": co,
                        "climb": vu,
                        "quality": t.quality,
                        "sensors": sorted({c.sensor_id for c in t.contributors}),
                        "updated_ns": t.last_update_time_ns,
                    }
                )
            self.tracks = tracks
        # Trails: only the last history_s, and forget tracks gone that long.
        horizon = batch.time_ns - int(self.config.history_s * 1e9)
        for tid in list(self._trails):
            trail = self._trails[tid]
            trail.drop_before(horizon)
            if not trail:
                del self._trails[tid]

    def devices(self) -> list[dict[str, Any]]:
        """Device health, read from the live counters (the health topic only
        ticks once a health interval; a page opened now should not wait)."""
        return [
            {
                "id": dev_id,
                "state": _state_name(st.state),
                "detail": st.detail,
                "frames": st.frames_in,
                "reports": st.reports_out,
                "drops": dict(sorted(st.drops.items())),
            }
            for dev_id, st in sorted(self.gw.stats.items())
        ]

    def snapshot(self) -> dict[str, Any]:
        """Everything one page needs, for :func:`_dumps` (JSON values, and each
        track's trail, which it writes as ``[[lat, lon], ...]``)."""
        for batch in self._tracks.get_all():
            self.take_picture(batch)
        tracks = [
            # The trail itself, not its points: _dumps writes them one track at a
            # time (1000 tracks of 300 points as lists were ~36 MB per snapshot).
            {**t, "trail": self._trails.get(t["id"], _NO_TRAIL)}
            for t in self.tracks
        ]
        return {
            "gateway_id": self.gw.config.gateway_id,
            "time_ns": self.picture_time_ns,
            "batch_sequence": self.batch_sequence,
            "sent_ns": time.time_ns(),
            "authority": self.authority,
            "cues": self.cues,
            "sensors": self.sensors(),
            "devices": self.devices(),
            "tracks": tracks,
        }

    # --- serving ----------------------------------------------------------------
    #
    # Each page has its own bounded queue and writer task: the broadcast only
    # puts the (shared) snapshot text on the queues, so it never waits for a
    # page. A page whose queue is full, or whose write takes longer than
    # send_timeout_s, is dropped (its connection aborted) and counted; it does
    # not slow the others, /healthz or the cue path (issue 23, item 4).

    async def run(self) -> None:
        """Queue a snapshot for every open page ``update_hz`` times a second."""
        period = 1.0 / self.config.update_hz
        while True:
            await asyncio.sleep(period)
            if not self._clients:
                continue
            try:
                text = _dumps(self.snapshot())
            except ValueError as exc:  # a NaN in the picture: skip this one, keep the display
                self.snapshot_errors += 1
                log.warning("web: snapshot not sent: %s", exc)
                continue
            self._broadcast(text)

    def _broadcast(self, text: str) -> None:
        for client in list(self._clients):
            try:
                client.queue.put_nowait(text)
            except asyncio.QueueFull:
                self._drop(client, "slow")

    def _drop(self, client: _Client, reason: str) -> None:
        """Forget a page, count it by reason, and abort its connection (a close
        handshake would wait on the very client that does not read)."""
        if client not in self._clients:
            return
        self._clients.discard(client)
        self.dropped[reason] += 1
        log.info("web: display client %s dropped (%s)", client.peer, reason)
        if client.writer is not None and client.writer is not asyncio.current_task():
            client.writer.cancel()
        if client.transport is not None:
            client.transport.abort()

    async def _write(self, client: _Client) -> None:
        timeout = self.config.send_timeout_s
        try:
            while True:
                text = await client.queue.get()
                async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel on 3.11
                    await client.ws.send_str(text)
                self.sent += 1
        except TimeoutError:
            self._drop(client, "send_timeout")
        except Exception as exc:  # closed under us, or anything else: this page only
            log.debug("web: send to %s failed: %r", client.peer, exc)
            self._drop(client, "send_error")

    async def handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        if len(self._clients) + self._opening >= self.max_clients:
            self.refused["limit"] += 1
            raise web.HTTPServiceUnavailable(
                text="display: too many open pages (web.max_clients)\n",
                headers={"Retry-After": "10", "Connection": "close"},
            )
        # The page sends nothing but pongs and a close: a small frame limit.
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4096)
        self._opening += 1
        try:
            await ws.prepare(request)
        finally:
            self._opening -= 1
        client = _Client(ws, request.transport, request.remote, asyncio.Queue(self.config.client_queue))
        self._clients.add(client)
        client.queue.put_nowait(_dumps(self.snapshot()))  # first picture at once, not one period later
        client.writer = asyncio.create_task(self._write(client), name=f"web:{client.peer}")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            if client in self._clients and isinstance(ws.exception(), TimeoutError):
                # No pong within heartbeat/2 (aiohttp closes the socket): a page
                # that stopped reading before it fell a queue behind.
                self._drop(client, "no_pong")
            self._clients.discard(client)
            client.writer.cancel()
        return ws

    async def handle_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot(), dumps=_dumps)

    def app(self) -> web.Application:
        static = resources.files("gateway.web").joinpath("static")

        def page(name: str, ctype: str) -> Any:
            body = static.joinpath(name).read_bytes()

            async def handler(request: web.Request) -> web.Response:
                return web.Response(body=body, content_type=ctype, charset="utf-8")

            return handler

        app = web.Application(middlewares=[self.guard.middleware])
        for path, (name, ctype) in _STATIC.items():
            app.router.add_get(path, page(name, ctype))
        app.router.add_get("/ws", self.handle_ws)
        app.router.add_get("/state.json", self.handle_state)
        app.on_response_prepare.append(add_security_headers)
        app.on_shutdown.append(self._close_all)
        return app

    def bind(self, port: int) -> None:
        """The server listens on ``port``: fix the Host/Origin allow-list, and
        keep the page limit under the file descriptors this process may open."""
        self.guard.bind(port)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and self.max_clients > soft // 2:
            log.warning(
                "web: max_clients %d lowered to %d, half the open-file limit %d (LimitNOFILE)",
                self.max_clients,
                soft // 2,
                soft,
            )
            self.max_clients = max(1, soft // 2)

    async def _close_all(self, app: web.Application) -> None:
        """Close every page at once (a close handshake each, 0.5 s at most, then
        the socket is aborted): a page that does not read must not stretch the
        gateway's shutdown past shutdown_timeout_s."""
        clients = list(self._clients)
        self._clients.clear()

        async def close(client: _Client) -> None:
            if client.writer is not None:
                client.writer.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await client.ws.close()
            if client.transport is not None:
                client.transport.abort()

        await asyncio.gather(*(close(c) for c in clients))


class _Trail:
    """One track's trail: update times and (lat, lon) in flat arrays.

    24 bytes a point; a deque of ``(t_ns, lat, lon)`` tuples took ~160, so
    1000 tracks at 5 Hz over the default 60 s of history held ~49 MB while a
    page was open (issue 18, memory). Points leave from the front by moving
    ``start``; the arrays are compacted once most of them are gone.
    """

    __slots__ = ("ll", "start", "t")

    def __init__(self) -> None:
        self.t = array("q")
        self.ll = array("d")  # lat0, lon0, lat1, lon1, ...
        self.start = 0

    def __len__(self) -> int:
        return len(self.t) - self.start

    def last_time(self) -> int | None:
        return self.t[-1] if len(self.t) > self.start else None

    def append(self, t_ns: int, lat: float, lon: float) -> None:
        self.t.append(t_ns)
        self.ll.append(lat)
        self.ll.append(lon)

    def drop_before(self, horizon_ns: int) -> None:
        """Drop points from the front while they are older than ``horizon_ns``."""
        t, s = self.t, self.start
        while s < len(t) and t[s] < horizon_ns:
            s += 1
        if s > 32 and 2 * s > len(t):  # amortised: each point is moved at most once more
            del t[:s]
            del self.ll[: 2 * s]
            s = 0
        self.start = s

    def points(self) -> list[list[float]]:
        """``[[lat, lon], ...]``, oldest first (the page's JSON)."""
        ll = self.ll
        return [[ll[i], ll[i + 1]] for i in range(2 * self.start, len(ll), 2)]


_NO_TRAIL = _Trail()  # a track without one yet (never appended to)


@dataclass(eq=False)
class _Client:
    """One open page: its socket, its transport (to abort it) and its queue."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    peer: str | None
    queue: asyncio.Queue[str]
    writer: asyncio.Task[None] | None = None


def _dumps(snapshot: dict[str, Any]) -> str:
    # Strict JSON: the page's JSON.parse rejects NaN; a NaN here is a bug to see.
    return json.dumps(snapshot, allow_nan=False, separators=(",", ":"), default=_trail_points)


def _trail_points(obj: object) -> list[list[float]]:
    """``json.dumps``' hook for what it cannot write itself: a track's trail."""
    if isinstance(obj, _Trail):
        return obj.points()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


async def start_web_server(display: SituationDisplay) -> HttpEndpoint:
    cfg = display.config
    endpoint = HttpEndpoint(display.app(), cfg.host, cfg.port, "situation display")
    await endpoint.start()
    display.bind(endpoint.port)
    return endpoint

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
import time
from collections import deque
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pymap3d
from aiohttp import WSMsgType, web

from gateway.config import WebConfig
from gateway.metrics import HttpEndpoint
from hilgw.v1 import health_pb2, track_pb2

if TYPE_CHECKING:
    from gateway.supervisor import Gateway

__all__ = ["SituationDisplay", "start_web_server"]

log = logging.getLogger(__name__)

_STATUS = {1: "tentative", 2: "confirmed", 3: "coasting", 4: "dropped"}
_STATIC = {
    "/": ("index.html", "text/html"),
    "/display.js": ("display.js", "text/javascript"),
    "/display.css": ("display.css", "text/css"),
}
# Nothing but this origin: no CDN, no font service, no tile server.
_CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
_SEND_TIMEOUT_S = 2.0  # a page that cannot take a snapshot this fast is closed


def _state_name(state: int) -> str:
    return health_pb2.DeviceState.Name(state).removeprefix("DEVICE_STATE_")  # type: ignore[arg-type]  # int is the wire value


class SituationDisplay:
    """Keeps the display state and pushes it to the open pages.

    ``authority`` and ``cues`` are what the page shows for the cue path:
    "HOLD" and an empty list until the cue path sets them (a list of dicts
    with ``cue_id``, ``launcher_id``, ``track_id``, ``status``); the
    supervisor sets them on every change (``CuePath.on_state``).
    """

    def __init__(self, gw: Gateway, config: WebConfig) -> None:
        self.gw = gw
        self.config = config
        self._tracks = gw.tracks.subscribe("web", maxsize=8)
        self.authority = "HOLD"
        self.cues: list[dict[str, Any]] = []
        self.tracks: list[dict[str, Any]] = []
        self.picture_time_ns = 0
        self.batch_sequence = 0
        self._trails: dict[int, deque[tuple[int, float, float]]] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._sensors: list[dict[str, Any]] | None = None
        self.sent = 0

    @property
    def clients(self) -> int:
        return len(self._sockets)

    # --- state ------------------------------------------------------------------

    def sensors(self) -> list[dict[str, Any]]:
        """Sensor sites, with coverage where the scenario of the emulated
        bench gives it (a real device's config carries no coverage)."""
        if self._sensors is not None:
            return self._sensors
        coverage: dict[str, dict[str, float]] = {}
        emu = self.gw.emulation
        if emu is not None:
            try:
                from sim_devices.scenario import resolve_scenario

                for sensor in resolve_scenario(emu.config.scenario).sensors:
                    coverage[sensor.id] = {
                        "range_m": sensor.range_max_m,
                        "az_center_deg": sensor.azimuth_center_deg,
                        "az_width_deg": sensor.azimuth_width_deg,
                    }
            except Exception as exc:  # the display is a convenience: show the sites anyway
                log.warning("web: no sensor coverage from the scenario: %s", exc)
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
                trail = self._trails.setdefault(t.track_id, deque())
                if not trail or trail[-1][0] != t.last_update_time_ns:
                    trail.append((t.last_update_time_ns, la, lo))
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
            while trail and trail[0][0] < horizon:
                trail.popleft()
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
        """Everything one page needs, as JSON-ready values."""
        for batch in self._tracks.get_all():
            self.take_picture(batch)
        tracks = [
            {**t, "trail": [[la, lo] for _, la, lo in self._trails.get(t["id"], ())]} for t in self.tracks
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

    async def run(self) -> None:
        """Push a snapshot to every open page ``update_hz`` times a second."""
        period = 1.0 / self.config.update_hz
        while True:
            await asyncio.sleep(period)
            if not self._sockets:
                continue
            text = _dumps(self.snapshot())
            await self._broadcast(text)

    async def _broadcast(self, text: str) -> None:
        async def send(ws: web.WebSocketResponse) -> None:
            try:
                async with asyncio.timeout(_SEND_TIMEOUT_S):  # not wait_for: it can swallow a cancel on 3.11
                    await ws.send_str(text)
                self.sent += 1
            except (TimeoutError, ConnectionError, RuntimeError):
                self._sockets.discard(ws)
                with contextlib.suppress(Exception):
                    await ws.close()

        await asyncio.gather(*(send(ws) for ws in list(self._sockets)))

    async def handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            # First picture at once, not one period later.
            await ws.send_str(_dumps(self.snapshot()))
            async for msg in ws:  # the page sends nothing; this waits for the close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._sockets.discard(ws)
        return ws

    async def handle_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    def app(self) -> web.Application:
        static = resources.files("gateway.web").joinpath("static")

        def page(name: str, ctype: str) -> Any:
            body = static.joinpath(name).read_bytes()

            async def handler(request: web.Request) -> web.Response:
                resp = web.Response(body=body, content_type=ctype, charset="utf-8")
                resp.headers["Content-Security-Policy"] = _CSP
                resp.headers["Cache-Control"] = "no-store"
                return resp

            return handler

        app = web.Application()
        for path, (name, ctype) in _STATIC.items():
            app.router.add_get(path, page(name, ctype))
        app.router.add_get("/ws", self.handle_ws)
        app.router.add_get("/state.json", self.handle_state)
        app.on_shutdown.append(self._close_all)
        return app

    async def _close_all(self, app: web.Application) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        self._sockets.clear()


def _dumps(snapshot: dict[str, Any]) -> str:
    # Strict JSON: the page's JSON.parse rejects NaN; a NaN here is a bug to see.
    return json.dumps(snapshot, allow_nan=False, separators=(",", ":"))


async def start_web_server(display: SituationDisplay) -> HttpEndpoint:
    cfg = display.config
    endpoint = HttpEndpoint(display.app(), cfg.host, cfg.port, "situation display")
    await endpoint.start()
    return endpoint

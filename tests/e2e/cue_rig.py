"""The gateway side of the cue end-to-end tests: a launcher driver on the
configured device and a cue path fed with a confirmed track (no fusion, no
sensors), so that what reaches the launcher emulator depends on the cue path
alone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from gateway.bus import Topic
from gateway.config import GatewayConfig
from gateway.cue.driver_link import DriverLink
from gateway.cue.path import CuePath
from gateway.devices.base import DriverContext
from gateway.devices.launcher import LauncherDriver
from gateway.health import DeviceStats
from hilgw.v1 import track_pb2
from tests.unit.cue_support import GW_SEED, OP_SECRET, make_batch, make_track


def write_keys_file(directory: Path) -> Path:
    """The cue path's keys file (mode 0600): operator op-alice (``OP_SECRET``) and the
    gateway's signing key gw-key (``GW_SEED``; the CLI verifies with it too). Cues are
    signed with the launcher device's ``cue_keys`` (docs/cue-path.md §3), not from here."""
    keys = directory / "keys.toml"
    keys.write_text(
        f'[operator.op-alice]\nsecret = "{OP_SECRET.hex()}"\noperator = "alice"\n'
        f'[gateway.gw-key]\nsecret = "{GW_SEED.hex()}"\n'
    )
    os.chmod(keys, 0o600)
    return keys


class Rig:
    """The gateway side: the launcher driver task and a cue path task."""

    def __init__(self, cfg: GatewayConfig, track_id: Callable[[], int] = lambda: 7) -> None:
        self.cfg = cfg
        self.track_id = track_id
        self.tracks: Topic[track_pb2.TrackBatch] = Topic("tracks")
        dev = cfg.devices[0]
        ctx = DriverContext(
            cfg.gateway_id, Topic("reports"), Topic("raw"), DeviceStats(dev.id, "launcher", "serial")
        )
        self.driver = LauncherDriver(dev, ctx)
        self.driver_task = asyncio.create_task(self.driver.run())
        self.path: CuePath | None = None
        self.task: asyncio.Task[None] | None = None
        self.feeder = asyncio.create_task(self._feed())

    def start_path(self) -> CuePath:
        assert self.cfg.cue is not None
        self.path = CuePath(self.cfg.cue, self.cfg.gateway_id, tracks=self.tracks, mqtt=self.cfg.mqtt)
        self.path.add_link(DriverLink("L1", self.driver, self.path.launcher_event))
        self.task = asyncio.create_task(self.path.run())
        return self.path

    async def stop_path(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _feed(self) -> None:
        while True:  # a confirmed track in L1's volume, 5 Hz
            t = time.time_ns()
            self.tracks.publish(make_batch([make_track(self.track_id(), t_ns=t)], t))
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        # Bounded: a task that does not end on cancel fails the test here
        # instead of hanging it until pytest-timeout.
        async with asyncio.timeout(10):
            await self.stop_path()
            for t in (self.feeder, self.driver_task):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t

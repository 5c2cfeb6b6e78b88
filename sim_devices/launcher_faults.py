"""A launcher's fault timeline on the scenario clock (sim_devices/faults.py), as the
launcher emulator (sim_devices/launcher_emulator.py) applies it: which faults
silence or deafen it, what it answers, how its serial bytes are mangled, and
the answers an attacker would put on the link instead of the real ones
(forged, replayed, stale: docs/icd/launcher.md §7.5, docs/scoring.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import numpy as np

from drivers.launcher import Ack, LauncherStatus, NackReason
from sim_devices.faults import FaultSchedule, corrupt_crc, garbage

__all__ = ["LauncherFaults", "Line"]


class Line(Protocol):
    """What :meth:`LauncherFaults.run_edges` does to the emulator's link."""

    @property
    def plugged(self) -> bool: ...

    async def unplug(self) -> None: ...

    async def replug(self) -> None: ...

    async def bus_off(self) -> None: ...


class LauncherFaults:
    """One launcher's fault timeline (sim_devices/faults.py) on the scenario clock.

    Scenario time is ``speed · (now - epoch)``, as in the sensor emulators.
    What each fault did is counted in :attr:`counts` (the ``stopped`` line).
    """

    #: Faults during which no heartbeat leaves.
    _SILENT = ("silent_heartbeat", "dropout", "can_bus_off", "serial_unplug")
    #: Faults during which nothing leaves and nothing is heard.
    _DEAF = ("dropout", "can_bus_off", "serial_unplug")

    def __init__(
        self,
        schedule: FaultSchedule,
        *,
        epoch_ns: int,
        speed: float = 1.0,
        seed: int = 0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.schedule = schedule
        self.epoch_ns = epoch_ns
        self.speed = speed
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.counts: Counter[str] = Counter()
        self._last_good: dict[str, Ack | LauncherStatus] = {}  # launcher_replayed sends these again

    def t(self) -> float:
        """Scenario time now (s)."""
        return (self.clock() - self.epoch_ns) / 1e9 * self.speed

    def _active(self, kinds: tuple[str, ...]) -> bool:
        t = self.t()
        return any(self.schedule.active_kind(k, t) is not None for k in kinds)

    def silent(self) -> bool:
        return self._active(self._SILENT)

    def deaf(self) -> bool:
        return self._active(self._DEAF)

    def no_ack(self) -> bool:
        return self._active(("launcher_no_ack",))

    def reply(
        self,
        event: Ack | LauncherStatus,
        seal: Callable[[Ack | LauncherStatus], Ack | LauncherStatus],
        forge: Callable[[Ack | LauncherStatus, bytes], Ack | LauncherStatus],
    ) -> Ack | LauncherStatus:
        """The answer to put on the link for ``event`` through the active
        ``launcher_forged`` / ``launcher_replayed`` / ``launcher_stale`` faults."""
        t = self.t()
        kind = type(event).__name__
        stale = self.schedule.active_kind("launcher_stale", t)
        if stale is not None:
            step = stale.step_s if stale.step_s is not None else -5.0
            self.counts["replies_stale"] += 1
            return seal(dataclasses.replace(event, launcher_time_ns=event.launcher_time_ns + int(step * 1e9)))
        sealed = seal(event)
        replay = self.schedule.active_kind("launcher_replayed", t) is not None
        if replay and kind in self._last_good:
            self.counts["replies_replayed"] += 1
            return self._last_good[kind]
        if replay or self.schedule.active_kind("launcher_forged", t) is not None:
            self.counts["replies_forged"] += 1
            return forge(sealed, self.rng.bytes(32))
        self._last_good[kind] = sealed
        return sealed

    def nack(self) -> NackReason | None:
        """The nack a launcher_nack fault answers authentic cues with now (None: no such fault)."""
        return NackReason.NOT_READY if self._active(("launcher_nack",)) else None

    def mutate(self, data: bytes) -> bytes:
        """Serial output through the active garbage and bad_crc faults."""
        t = self.t()
        p = self.schedule.probability("bad_crc", t)
        if p > 0:
            data, n = corrupt_crc(data, self.rng, p)
            self.counts["crc_corrupted"] += n
        junk = self.schedule.garbage_bytes(t)
        if junk:
            data = garbage(junk, self.rng) + data
            self.counts["garbage_frames"] += 1
        return data

    async def run_edges(self, link: Line) -> None:
        """Unplug and replug a serial line, take a CAN controller bus-off, at the timeline's edges."""
        off = False
        while True:
            t = self.t()
            unplug = self.schedule.active_kind("serial_unplug", t) is not None
            if unplug and link.plugged:
                await link.unplug()
                self.counts["unplugs"] += 1
            elif not unplug and not link.plugged:
                await link.replug()
            bus_off = self.schedule.active_kind("can_bus_off", t) is not None
            if bus_off and not off:
                await link.bus_off()
                self.counts["bus_offs"] += 1
            off = bus_off
            nxt = self.schedule.next_change(t)
            await asyncio.sleep(0.5 if nxt is None else min(0.5, max(0.001, (nxt - t) / self.speed)))

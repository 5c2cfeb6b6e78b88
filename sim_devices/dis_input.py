"""DIS input: Entity State PDUs from a lab simulator become the truth that drives emulators.

:class:`DisTruth` holds a fixed number of entity slots and answers
``at(t_s)`` exactly like :class:`sim_devices.truth.Truth` (ids, states
(N, 6) ECEF, active mask), so an emulator scans DIS entities as it scans a
scenario's targets. An entity (site, application, entity) takes a free slot
on its first PDU; its state is the last PDU's location and velocity, dead
reckoned linearly to the asked time (IEEE 1278.1-2012 Annex E, DRM F/P/W:
p(t) = p₀ + v₀ Δt; the acceleration of R/V models is ignored, which a
scan-rate emulator can afford), and it goes inactive (slot freed) when no
PDU came for ``timeout_s`` (IEEE 1278.1 heartbeat: 5 s default, times the
usual 2.4 multiplier = 12 s).

:class:`DisListener` is the asyncio UDP endpoint feeding it through
:class:`drivers.dis.DisCodec`. PDUs that are not Entity State
(``unsupported_pdu``) are ordinary DIS traffic: counted, not logged as
errors; other rejects are counted and logged.

Scenario time: the emulator's t_s maps to UTC as ``epoch_ns + t_s·10⁹``;
entity times are the PDU's absolute timestamp when it has one, else the
receive time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from drivers.base import Rejected, Role
from drivers.dis import DisCodec, EntityState

__all__ = ["DisListener", "DisTruth"]

log = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
EntityId = tuple[int, int, int]


class DisTruth:
    """Entity slots fed by Entity State PDUs; a truth source for the emulators."""

    def __init__(self, epoch_ns: int, capacity: int = 64, timeout_s: float = 12.0) -> None:
        self.epoch_ns = int(epoch_ns)
        self.timeout_s = timeout_s
        self.ids: tuple[str, ...] = tuple(f"dis-slot-{i}" for i in range(capacity))
        self.entity: list[EntityId | None] = [None] * capacity
        self.marking: list[str] = [""] * capacity
        self._slot: dict[EntityId, int] = {}
        self._p = np.full((capacity, 3), np.nan)
        self._v = np.zeros((capacity, 3))
        self._t = np.zeros(capacity, np.int64)
        self.counters: Counter[str] = Counter()

    def update(self, es: EntityState, t_rx_ns: int) -> None:
        """Take one Entity State PDU received at UTC ``t_rx_ns``."""
        self.expire(t_rx_ns)
        slot = self._slot.get(es.entity_id)
        if slot is None:
            free = [i for i, e in enumerate(self.entity) if e is None]
            if not free:
                self.counters["no_free_slot"] += 1
                return
            slot = free[0]
            self._slot[es.entity_id] = slot
            self.entity[slot] = es.entity_id
            self.counters["entities_seen"] += 1
        self.marking[slot] = es.marking
        self._p[slot] = es.location_m
        self._v[slot] = es.velocity_mps
        self._t[slot] = es.t_ns if es.t_ns is not None else t_rx_ns
        self.counters["entity_state"] += 1

    def expire(self, now_ns: int) -> None:
        """Free the slots of entities silent for ``timeout_s``."""
        for eid, slot in list(self._slot.items()):
            if (now_ns - self._t[slot]) * 1e-9 > self.timeout_s:
                del self._slot[eid]
                self.entity[slot] = None
                self._p[slot] = np.nan
                self.counters["entities_timed_out"] += 1

    def slot_of(self, entity_id: EntityId) -> int | None:
        return self._slot.get(entity_id)

    def at(self, t_s: float) -> tuple[tuple[str, ...], F64, B]:
        """``(ids, states (N, 6), active (N,))`` at scenario time ``t_s`` (dead reckoned)."""
        t_ns = self.epoch_ns + round(t_s * 1e9)
        active = np.array([e is not None for e in self.entity]) & ((t_ns - self._t) * 1e-9 <= self.timeout_s)
        dt = (t_ns - self._t) * 1e-9
        x = np.full((len(self.ids), 6), np.nan)
        x[:, :3] = self._p + self._v * dt[:, None]
        x[:, 3:] = self._v
        x[~active] = np.nan
        return self.ids, x, active


class DisListener(asyncio.DatagramProtocol):
    """UDP endpoint: each datagram through the codec into a :class:`DisTruth`."""

    def __init__(self, truth: DisTruth, clock: Callable[[], int]) -> None:
        self.truth = truth
        self.clock = clock
        self.codec = DisCodec(Role.GATEWAY, source="dis-input")
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        t_rx = self.clock()
        counters = self.truth.counters
        counters["datagrams"] += 1
        for ev in self.codec.receive_datagram(data, t_rx):
            if isinstance(ev, Rejected):
                counters[ev.reason] += 1
                if ev.reason != "unsupported_pdu":  # other PDU types are normal DIS traffic
                    log.warning("dis input: %s", ev.error)
            else:
                self.truth.update(ev, t_rx)

    @property
    def port(self) -> int:
        assert self.transport is not None  # after create_datagram_endpoint
        return int(self.transport.get_extra_info("sockname")[1])


async def open_listener(truth: DisTruth, host: str, port: int, clock: Callable[[], int]) -> DisListener:
    """Bind a UDP listener on ``host:port`` (0 = ephemeral) feeding ``truth``."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(lambda: DisListener(truth, clock), local_addr=(host, port))
    return proto

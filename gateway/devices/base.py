"""What every device driver gets from the gateway, and the shape of a driver."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from gateway.bus import Topic
from gateway.config import DeviceConfig
from gateway.devices.droplog import DropLog
from gateway.fusion.api import ReportArrays, SensorGeometry
from gateway.health import DeviceStats
from gateway.protocols import driver_class
from gateway.transports.base import DatagramTransport


@dataclass(frozen=True, slots=True)
class ReportsIn:
    """A batch of normalised reports from one device, as published on the bus."""

    device_id: str
    receive_time_ns: int
    reports: ReportArrays
    #: The decoded wire rows the reports were normalised from (same rows, same
    #: order), when the codec has them: they carry what ``ReportArrays`` does
    #: not, the wire sequence and angle rates (see normalise.reports_to_proto).
    source: npt.NDArray[np.void] | None = None


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame exactly as it crossed a transport (for recording and replay)."""

    device_id: str
    transport: str
    receive_time_ns: int
    data: bytes


@dataclass
class DriverContext:
    gateway_id: str
    reports: Topic[ReportsIn]
    raw: Topic[RawFrame]
    stats: DeviceStats
    sensor_index: int = -1
    wall_ns: Callable[[], int] = field(default=time.time_ns)
    mono: Callable[[], float] = field(default=time.monotonic)


@dataclass(frozen=True, slots=True)
class DriverServices:
    """What a driver may take from its gateway when it is built (one shape for all)."""

    #: Registers a sensor with the fusion engine; returns its index.
    add_sensor: Callable[[SensorGeometry], int]
    #: The gateway's own-ship registry (gateway.devices.ownship.OwnShipRegistry).
    ownship: Any = None


class DeviceDriver:
    """A driver's ``run()`` opens its transport and loops until it fails.

    It returns or raises only on failure (a :class:`hilgw.errors.HilgwError`
    for expected faults such as an unplugged adapter); the supervisor restarts
    it with back-off. Bad frames never end ``run()``: they are counted.
    """

    def __init__(self, config: DeviceConfig, ctx: DriverContext) -> None:
        self.config = config
        self.ctx = ctx
        #: Drop log lines, at most one per reason per minute (counts stay in ctx.stats).
        self.drop_log = DropLog(logging.getLogger(type(self).__module__), config.id)
        self._loss_transport: DatagramTransport | None = None
        self._transport_lost = 0
        self._kernel_lost = 0

    @classmethod
    def build(cls, config: DeviceConfig, ctx: DriverContext, services: DriverServices) -> Self:
        """The one constructor the supervisor calls; drivers that need a
        service (a fusion sensor, the own-ship registry) override it."""
        return cls(config, ctx)

    async def run(self) -> None:
        raise NotImplementedError

    def note_transport_losses(self, transport: DatagramTransport) -> None:
        """Count what the transport lost before this driver read it (``queue_overflow`` and
        ``kernel_overflow`` drops).

        A datagram transport drops the oldest datagram when its queue is full
        (the reader is behind); the device's health must say so.
        """
        if transport is not self._loss_transport:  # reopened after a restart: counts from 0
            self._loss_transport, self._transport_lost, self._kernel_lost = transport, 0, 0
        lost = transport.dropped - self._transport_lost
        if lost > 0:
            self.ctx.stats.drop("queue_overflow", lost)
        self._transport_lost = transport.dropped
        # Dropped by the kernel at a full receive buffer (the reader was behind).
        lost = transport.kernel_dropped - self._kernel_lost
        if lost > 0:
            self.ctx.stats.drop("kernel_overflow", lost)
        self._kernel_lost = transport.kernel_dropped


def build_driver(config: DeviceConfig, ctx: DriverContext, services: DriverServices) -> DeviceDriver:
    """Every driver is built the same way, live and in replay: ``Class.build(config, ctx, services)``
    (gateway/protocols.py names the class; the driver takes what it needs)."""
    driver: DeviceDriver = driver_class(config.protocol).build(config, ctx, services)
    return driver

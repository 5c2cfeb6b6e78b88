"""What the parts a gateway starts read of it while it runs: one Protocol, no import of the supervisor.

The metrics collector, the situation display, live scoring and the
federation and partner wiring are handed the running
:class:`gateway.supervisor.Gateway`, which builds them; they name it by this
Protocol instead, so the supervisor imports them and none of them imports the
supervisor back (docs/architecture.md, "Floors"). Every member is read-only
here: a part may use what it is given, never rebind the gateway's parts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.bus import Topic
    from gateway.config import DeviceConfig, GatewayConfig
    from gateway.cue.path import CuePath
    from gateway.devices.base import RawFrame, ReportsIn
    from gateway.emulation import EmulatedDevices
    from gateway.federation.fastpath import NatsLink
    from gateway.fusion_stage import FusionStage
    from gateway.health import DeviceStats
    from gateway.outputs.session import MqttSession
    from gateway.recording import Recorder
    from gateway.scoring import LiveScorer
    from gateway.stages import StageClock
    from gateway.task_health import TaskHealth
    from hilgw.v1 import health_pb2, track_pb2

__all__ = ["DisplayCounts", "RunningGateway", "ScoringParts"]


class DisplayCounts(Protocol):
    """What /metrics reads of the situation display (gateway/web/server.py)."""

    @property
    def clients(self) -> int: ...
    @property
    def dropped(self) -> Counter[str]: ...
    @property
    def refused(self) -> Counter[str]: ...


class ScoringParts(Protocol):
    """What /metrics reads of live scoring (gateway/score.py)."""

    @property
    def scorer(self) -> LiveScorer: ...


class RunningGateway(Protocol):
    """The running gateway as its parts see it (:class:`gateway.supervisor.Gateway` is one)."""

    @property
    def config(self) -> GatewayConfig: ...
    @property
    def devices(self) -> list[DeviceConfig]:
        """The enabled device blocks, emulated ones included."""
        ...

    @property
    def stats(self) -> dict[str, DeviceStats]: ...
    @property
    def reports(self) -> Topic[ReportsIn]: ...
    @property
    def raw(self) -> Topic[RawFrame]: ...
    @property
    def tracks(self) -> Topic[track_pb2.TrackBatch]: ...
    @property
    def health(self) -> Topic[health_pb2.DeviceHealth]: ...
    @property
    def fusion(self) -> FusionStage: ...
    @property
    def stages(self) -> StageClock: ...
    @property
    def task_health(self) -> TaskHealth: ...
    @property
    def task_list(self) -> list[asyncio.Task[None]]: ...
    @property
    def mqtt(self) -> MqttSession | None: ...
    @property
    def mqtt_commands(self) -> MqttSession | None: ...
    @property
    def nats(self) -> NatsLink | None:
        """``[nats]``: the core NATS fast path beside the MQTT session (docs/federation.md §1)."""
        ...

    @property
    def mqtt_port(self) -> int: ...
    @property
    def emulation(self) -> EmulatedDevices | None: ...
    @property
    def recorder(self) -> Recorder | None: ...
    @property
    def cue(self) -> CuePath | None: ...
    @property
    def scoring(self) -> ScoringParts | None: ...
    @property
    def web(self) -> DisplayCounts | None: ...

"""The ``[[faults]]`` entries of a scenario file: the fault timeline's data model.

Validated with the rest of the scenario (:func:`sim_devices.scenario.parse_scenario`
checks that each fault's device exists and that its kind applies to it, with
:data:`FAULT_TARGETS`); applied by the emulators through
:mod:`sim_devices.faults`. Kept apart from :mod:`sim_devices.scenario` only
to keep that module small; import it from either.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hilgw.tomlconfig import StrictModel

__all__ = ["FAULT_TARGETS", "FaultConfig", "FaultKind"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # as sim_devices.scenario's ids


class _Model(StrictModel):
    """Unknown keys, non-finite and absurdly large numbers refused (hilgw.tomlconfig)."""


FaultKind = Literal[
    "dropout",
    "garbage",
    "bad_crc",
    "delay",
    "duplicate",
    "clock_step",
    "serial_unplug",
    "can_bus_off",
    "silent_heartbeat",
    "launcher_nack",
    "launcher_no_ack",
    "launcher_forged",
    "launcher_replayed",
    "launcher_stale",
]

#: Which device kinds each fault applies to (sensor kinds, and "launcher:can" /
#: "launcher:serial"). bad_crc needs the CRC framing of the project's serial
#: ICDs (docs/icd/serial-radar.md §3); unplug a serial line; bus-off a CAN bus
#: (can_radar: sim_devices/can_radar_emulator.py sends a SocketCAN bus-off error
#: frame, then nothing until the fault ends).
FAULT_TARGETS: dict[str, frozenset[str]] = {
    "dropout": frozenset({"serial_radar", "asterix", "can_radar", "launcher:can", "launcher:serial"}),
    "garbage": frozenset({"serial_radar", "asterix", "launcher:serial"}),
    "bad_crc": frozenset({"serial_radar", "launcher:serial"}),
    "delay": frozenset({"serial_radar", "asterix", "can_radar"}),
    "duplicate": frozenset({"serial_radar", "asterix", "can_radar"}),
    "clock_step": frozenset({"serial_radar", "asterix", "can_radar"}),
    "serial_unplug": frozenset({"serial_radar", "launcher:serial"}),
    "can_bus_off": frozenset({"can_radar", "launcher:can"}),
    "silent_heartbeat": frozenset({"serial_radar", "can_radar", "launcher:can", "launcher:serial"}),
    "launcher_nack": frozenset({"launcher:can", "launcher:serial"}),
    "launcher_no_ack": frozenset({"launcher:can", "launcher:serial"}),
    "launcher_forged": frozenset({"launcher:can", "launcher:serial"}),
    "launcher_replayed": frozenset({"launcher:can", "launcher:serial"}),
    "launcher_stale": frozenset({"launcher:can", "launcher:serial"}),
}


class FaultConfig(_Model):
    """``[[faults]]``: one injected device fault on the scenario timeline.

    Active for scenario times ``start_s <= t < start_s + duration_s``. The
    parameters a kind takes (and only those) may be given:

    * ``garbage``: ``garbage_bytes`` random bytes before every write (a frame of
      junk between delimiters on a serial line; a junk datagram on UDP);
    * ``bad_crc`` / ``duplicate``: ``probability`` that a frame is corrupted / sent twice;
    * ``delay``: ``delay_s`` added to every byte's departure;
    * ``clock_step``: ``step_s`` added to the device clock (reported times);
    * ``launcher_stale``: ``step_s`` added to the LauncherTime of acks and
      heartbeats (default -5 s); ``launcher_forged`` / ``launcher_replayed``
      put forged / replayed answers on the link instead of the real ones
      (docs/icd/launcher.md §7.5, sim_devices/launcher_emulator.py).

    ``dropout`` sends nothing; ``silent_heartbeat`` sends no STATUS;
    ``serial_unplug`` closes the line and reopens it at the end (see
    :mod:`sim_devices.faults`); ``can_bus_off`` puts a bus-off error frame on
    the CAN bus and then nothing until the end. The other kinds need no parameter.
    """

    device: str = Field(pattern=_ID)
    kind: FaultKind
    start_s: float = Field(ge=0)
    duration_s: float = Field(gt=0, le=86_400)
    probability: float | None = Field(default=None, gt=0, le=1)
    garbage_bytes: int | None = Field(default=None, ge=1, le=4096)
    delay_s: float | None = Field(default=None, gt=0, le=600)
    step_s: float | None = Field(default=None, ge=-86_400, le=86_400)

    @model_validator(mode="after")
    def _params(self) -> FaultConfig:
        takes = {
            "bad_crc": {"probability"},
            "duplicate": {"probability"},
            "garbage": {"garbage_bytes"},
            "delay": {"delay_s"},
            "clock_step": {"step_s"},
            "launcher_stale": {"step_s"},
        }.get(self.kind, set())
        for name in ("probability", "garbage_bytes", "delay_s", "step_s"):
            if getattr(self, name) is not None and name not in takes:
                raise ValueError(f"{name} does not apply to a {self.kind} fault")
        if self.kind == "delay" and self.delay_s is None:
            raise ValueError("a delay fault needs delay_s")
        if self.kind == "clock_step" and not self.step_s:
            raise ValueError("a clock_step fault needs a non-zero step_s")
        return self

    @property
    def end_s(self) -> float:
        """Scenario time the fault ends (exclusive)."""
        return self.start_s + self.duration_s

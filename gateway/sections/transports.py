"""Config models of the built-in transport kinds (``[devices.transport]``, chosen by ``kind``).

Read by the transports they configure (gateway/transports/); re-exported by
:mod:`gateway.config`, whose ``DeviceConfig`` holds them. Reference:
docs/config.md, "Transports".
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from hilgw.errors import ConfigError
from hilgw.tomlconfig import StrictModel

__all__ = [
    "BUILT_IN_KINDS",
    "STANDARD_BAUDRATES",
    "TRANSPORTS",
    "CanFilterConfig",
    "CanTransportConfig",
    "MemoryTransportConfig",
    "PluginTransportConfig",
    "SerialTransportConfig",
    "TransportConfig",
    "UdpTransportConfig",
    "resolve",
]

STANDARD_BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600,
                      1000000, 1500000, 2000000, 3000000, 4000000)  # fmt: skip


class SerialTransportConfig(StrictModel):
    """A serial line: a device path, a pty, or a pyserial URL (``socket://host:port``)."""

    kind: Literal["serial"]
    url: str = Field(min_length=1)
    baudrate: int = 921600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rtscts: bool = False

    @field_validator("baudrate")
    @classmethod
    def _std_baud(cls, v: int) -> int:
        if v not in STANDARD_BAUDRATES:
            raise ValueError(f"must be one of {', '.join(map(str, STANDARD_BAUDRATES))}")
        return v


class UdpTransportConfig(StrictModel):
    """UDP unicast, or multicast when ``group`` is set."""

    kind: Literal["udp"]
    bind_host: str = "127.0.0.1"
    bind_port: int = Field(ge=0, le=65535)
    group: str | None = None  # multicast group to join (IPv4)
    interface: str = "127.0.0.1"  # local address of the interface that joins the group
    remote_host: str | None = None  # where send() goes when no address is given
    remote_port: int | None = Field(default=None, ge=1, le=65535)
    #: SO_RCVBUF asked for: what the socket holds while the reader is behind
    #: (the size the kernel gives is read back and logged, docs/config.md).
    recv_buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=65536)


class MemoryTransportConfig(StrictModel):
    """An in-process link (tests); ``name`` joins the two ends."""

    kind: Literal["memory"]
    name: str = "memory"


class CanFilterConfig(StrictModel):
    """One python-can receive filter: a frame passes when ``id & can_mask == can_id & can_mask``."""

    can_id: int = Field(ge=0, le=0x1FFFFFFF)
    can_mask: int = Field(ge=0, le=0x1FFFFFFF)
    extended: bool = False


class CanTransportConfig(StrictModel):
    """A CAN bus through python-can: any interface by name (socketcan, pcan, kvaser,
    vector, virtual, udp_multicast, ...) and its channel (docs/icd/can-radar.md §2)."""

    kind: Literal["can"]
    interface: str = Field(min_length=1)
    channel: str | int | None = None
    bitrate: int | None = Field(default=None, gt=0)
    fd: bool = False
    data_bitrate: int | None = Field(default=None, gt=0)
    receive_own_messages: bool = False
    filters: list[CanFilterConfig] = Field(default_factory=list)
    #: Extra keyword arguments for ``can.Bus`` (interface-specific).
    options: dict[str, Any] = Field(default_factory=dict)
    #: Frames buffered between the reader thread and the driver; beyond it
    #: frames are dropped and counted ("queue_full").
    queue_size: int = Field(default=65536, ge=16)
    #: Reader thread's receive timeout: how fast a stop or a dead bus is seen.
    poll_s: float = Field(default=0.05, gt=0, le=1.0)
    send_timeout_s: float = Field(default=0.1, gt=0)
    #: SO_RCVBUF asked for on a bus with a Linux socket (socketcan, udp_multicast;
    #: 0: the OS default, ~208 kB, which a udp_multicast bus fills with 166 CAN FD
    #: frames: 30 ms at 5,600 frames/s). What the kernel gives is read back and logged.
    recv_buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=0)


#: The built-in transport kinds -> "module:Class", imported lazily by
#: :func:`resolve` (re-exported by :mod:`gateway.transports`); here, beside
#: their config models, so that validating a plug-in kind at load needs no
#: import of the transports.
TRANSPORTS: dict[str, str] = {
    "serial": "gateway.transports.serial:SerialTransport",
    "udp": "gateway.transports.udp:UdpTransport",
    "memory": "gateway.transports.memory_registry:memory_endpoint",
    "can": "gateway.transports.can:CanTransport",
}

#: The kinds built in; any other kind is a plug-in's.
BUILT_IN_KINDS = tuple(TRANSPORTS)


def resolve(kind: str) -> Any:
    """Import the class (or factory) registered for ``kind``."""
    target = TRANSPORTS.get(kind)
    if target is None:
        for ep in entry_points(group="hilgw.transports"):
            if ep.name == kind:
                target = ep.value
                break
    if target is None:
        raise ConfigError("transport.kind", f"unknown transport {kind!r}; known: {sorted(TRANSPORTS)}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class PluginTransportConfig(StrictModel):
    """A transport kind registered under the ``hilgw.transports`` entry-point
    group: ``kind`` and the plug-in's own keys. At load the kind must resolve
    (:func:`resolve`) and, when its class declares ``CONFIG_MODEL``
    (a pydantic model), the keys are validated by it; :attr:`resolved` is then
    what the transport class is called with."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    kind: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    _resolved: Any = PrivateAttr(default=None)

    @property
    def resolved(self) -> Any:
        """The plug-in's own config model (or this block when it declares none)."""
        return self._resolved if self._resolved is not None else self

    @model_validator(mode="after")
    def _registered(self) -> PluginTransportConfig:
        try:
            cls = resolve(self.kind)
        except ConfigError as exc:
            raise ValueError(f"kind: {exc.reason}") from None
        model = getattr(cls, "CONFIG_MODEL", None)
        if model is not None:
            try:
                self._resolved = model.model_validate({"kind": self.kind, **(self.model_extra or {})})
            except ValidationError as exc:
                err = exc.errors()[0]
                key = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"{key}: {str(err['msg']).removeprefix('Value error, ')}") from None
        return self


def _kind_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in BUILT_IN_KINDS else "plugin"


TransportConfig = Annotated[
    Annotated[SerialTransportConfig, Tag("serial")]
    | Annotated[UdpTransportConfig, Tag("udp")]
    | Annotated[MemoryTransportConfig, Tag("memory")]
    | Annotated[CanTransportConfig, Tag("can")]
    | Annotated[PluginTransportConfig, Tag("plugin")],
    Discriminator(_kind_tag),
]

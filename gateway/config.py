"""Gateway configuration: TOML, validated once at load time with pydantic.

The running application never re-checks configuration: every value that
reaches it has passed these models. A bad file raises
:class:`hilgw.errors.ConfigError` whose message is one line naming the dotted
key and the reason, e.g.::

    devices[radar-fwd].transport.baudrate: must be one of 9600, ... (got 12345)

The reference of every key is ``docs/config.md``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hilgw.errors import ConfigError

__all__ = [
    "DeviceConfig",
    "EmulationConfig",
    "FusionConfig",
    "GatewayConfig",
    "MqttConfig",
    "SerialTransportConfig",
    "SiteConfig",
    "UdpTransportConfig",
    "default_config",
    "load_config",
    "parse_config",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
STANDARD_BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600,
                      1000000, 1500000, 2000000, 3000000, 4000000)  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- transports ---------------------------------------------------------------


class SerialTransportConfig(_Model):
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


class UdpTransportConfig(_Model):
    """UDP unicast, or multicast when ``group`` is set."""

    kind: Literal["udp"]
    bind_host: str = "127.0.0.1"
    bind_port: int = Field(ge=0, le=65535)
    group: str | None = None  # multicast group to join (IPv4)
    interface: str = "127.0.0.1"  # local address of the interface that joins the group
    remote_host: str | None = None  # where send() goes when no address is given
    remote_port: int | None = Field(default=None, ge=1, le=65535)
    recv_buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=65536)


class MemoryTransportConfig(_Model):
    """An in-process link (tests); ``name`` joins the two ends."""

    kind: Literal["memory"]
    name: str = "memory"


TransportConfig = Annotated[
    SerialTransportConfig | UdpTransportConfig | MemoryTransportConfig,
    Field(discriminator="kind"),
]


# --- devices ------------------------------------------------------------------


class SiteConfig(_Model):
    """Where a sensor stands and how its frame is turned (docs/icd/serial-radar.md §2)."""

    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)
    alt_m: float = Field(ge=-500, le=10000)
    yaw_deg: float = Field(default=0.0, ge=-360, le=360)
    pitch_deg: float = Field(default=0.0, ge=-90, le=90)
    roll_deg: float = Field(default=0.0, ge=-180, le=180)


class RestartConfig(_Model):
    """Back-off for a device task that failed: doubles from ``initial_s`` to ``max_s``."""

    initial_s: float = Field(default=0.5, gt=0)
    max_s: float = Field(default=10.0, gt=0)


class DeviceConfig(_Model):
    id: str = Field(pattern=_ID)
    protocol: Literal["serial_radar"]
    transport: TransportConfig
    site: SiteConfig | None = None
    enabled: bool = True
    #: The sensor id the device puts on the wire; frames with another id are
    #: dropped and counted ("sensor_id"). None accepts any.
    wire_sensor_id: int | None = Field(default=None, ge=0, le=65535)
    #: No frame for this long marks the device DOWN.
    heartbeat_timeout_s: float = Field(default=3.0, gt=0)
    #: Reports whose sensor time is further than this from the gateway's
    #: clock are dropped as "stale".
    max_report_age_s: float = Field(default=10.0, gt=0)
    restart: RestartConfig = RestartConfig()

    @model_validator(mode="after")
    def _radar_needs_site(self) -> DeviceConfig:
        if self.protocol == "serial_radar" and self.site is None:
            raise ValueError("a serial_radar device needs a [site] block (lat_deg, lon_deg, alt_m)")
        return self


# --- outputs and stages -------------------------------------------------------


class MqttConfig(_Model):
    """Where the gateway publishes. ``broker = "embedded"`` starts an amqtt
    broker on 127.0.0.1 inside the gateway (bench use only)."""

    broker: Literal["external", "embedded"] = "external"
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=0, le=65535)
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    topic_prefix: str = Field(default="hilgw", pattern=r"^[A-Za-z0-9_/-]+$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    queue_size: int = Field(default=10000, ge=10)
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=15.0, gt=0)
    publish_reports: bool = True
    enabled: bool = True


class FusionConfig(_Model):
    """How often the fused picture is computed and published."""

    engine: str = "default"
    publish_hz: float = Field(default=5.0, gt=0, le=100)
    report_queue: int = Field(default=100_000, ge=100)
    #: Engine parameters, passed through to the engine's own config model.
    params: dict[str, Any] = Field(default_factory=dict)


class EmulationConfig(_Model):
    """Run the scenario's sensors as emulator processes on real transports.

    Every sensor of the scenario becomes a device of the gateway, unless a
    ``[[devices]]`` block with the same id exists: that block wins (this is how
    one emulated device is swapped for real hardware).
    """

    scenario: str = "builtin:demo"
    transport: Literal["pty", "tcp"] = "pty"
    speed: float = Field(default=1.0, gt=0)
    only: list[str] | None = None


class GatewayConfig(_Model):
    gateway_id: str = Field(default="hilgw", pattern=_ID)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    health_interval_s: float = Field(default=1.0, gt=0)
    shutdown_timeout_s: float = Field(default=2.0, gt=0)
    devices: list[DeviceConfig] = Field(default_factory=list)
    mqtt: MqttConfig = MqttConfig()
    fusion: FusionConfig = FusionConfig()
    emulation: EmulationConfig | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> GatewayConfig:
        seen: set[str] = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} appears twice")
            seen.add(d.id)
        return self


# --- loading ------------------------------------------------------------------


def _key(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """Dotted key for an error location; list items of ``devices`` by their id."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            ident = node[item].get("id") if isinstance(node, list) and item < len(node) else None
            ident = ident if isinstance(ident, str) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{ident or item}]"]
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            # pydantic adds the discriminator tag ("serial") as a location part.
            if isinstance(node, dict) and item not in node and item in {"serial", "udp", "memory"}:
                continue
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def parse_config(raw: dict[str, Any], source: str = "config") -> GatewayConfig:
    """Validate a parsed TOML document; raise ConfigError with a one-line message."""
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _key(tuple(err["loc"]), raw)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] not in {"missing"} and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more error{'s' if more > 1 else ''})"
        raise ConfigError(f"{source}: {key}" if key else source, msg) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Load and validate a TOML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    return parse_config(raw, source=str(p))


def default_config() -> GatewayConfig:
    """The embedded default of ``hilgw run``: the bundled emulated scenario and
    an embedded broker on 127.0.0.1."""
    return parse_config(
        {
            "gateway_id": "hilgw-demo",
            "mqtt": {"broker": "embedded", "port": 1883},
            "emulation": {"scenario": "builtin:demo", "transport": "pty"},
        },
        source="<default>",
    )

"""Gateway configuration: TOML, validated once at load time with pydantic.

The running application never re-checks configuration: every value that
reaches it has passed these models. A bad file raises
:class:`hilgw.errors.ConfigError` whose message is one line naming the dotted
key and the reason, e.g.::

    devices[radar-fwd].transport.baudrate: must be one of 9600, ... (got 12345)

The reference of every key is ``docs/config.md``.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from gateway.protocols import load_codec, protocol_spec
from gateway.sections.cue import CueConfig  # the [cue] section (docs/cue-path.md §7)
from gateway.sections.federation import FederationConfig, NatsConfig  # docs/federation.md
from gateway.sections.feeds import AsterixConfig, AsterixSourceConfig, GeoPointConfig, OwnShipConfig
from gateway.sections.mqtt import MqttConfig, MqttTlsConfig  # [mqtt] (docs/config.md)
from gateway.sections.partners import MarkingsConfig, PartnerConfig  # docs/partners.md
from gateway.sections.transports import (
    STANDARD_BAUDRATES,
    CanFilterConfig,
    CanTransportConfig,
    MemoryTransportConfig,
    SerialTransportConfig,
    TransportConfig,
    UdpTransportConfig,
)
from hilgw.errors import ConfigError
from hilgw.tomlconfig import StrictModel, one_line, read_toml

__all__ = [
    "STANDARD_BAUDRATES",
    "AsterixConfig",
    "AsterixSourceConfig",
    "CanFilterConfig",
    "CanTransportConfig",
    "DeviceConfig",
    "EmulationConfig",
    "FusionConfig",
    "GatewayConfig",
    "GeoPointConfig",
    "MemoryTransportConfig",
    "MetricsConfig",
    "MqttConfig",
    "MqttTlsConfig",
    "OwnShipConfig",
    "RecordingConfig",
    "ScoringConfig",
    "SerialTransportConfig",
    "SiteConfig",
    "TimeSyncConfig",
    "UdpTransportConfig",
    "WebConfig",
    "default_config",
    "load_config",
    "parse_config",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(StrictModel):
    """Unknown keys, non-finite and absurdly large numbers refused (hilgw.tomlconfig)."""


# --- transports (gateway/sections/transports.py) --------------------------------

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
    #: A registered protocol (gateway/protocols.py, or a ``hilgw.protocols`` entry point).
    protocol: str = Field(min_length=1)
    transport: TransportConfig
    #: Described protocols (can_dbc_radar, binary_radar): the wire description, a
    #: table or a TOML file's path (relative to the config file's folder).
    codec: dict[str, Any] | str | None = None
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
    #: Own-ship navigation of a ship-mounted feed (protocol "asterix").
    ownship: OwnShipConfig | None = None
    #: ASTERIX editions and normalisation parameters (protocol "asterix").
    asterix: AsterixConfig | None = None
    #: CAN devices (can_radar, launcher): added to every arbitration id of the DBC.
    can_id_offset: int = Field(default=0, ge=0, le=0x7FF)
    #: Launcher: its id on the wire (docs/icd/launcher.md §5); None accepts any.
    launcher_id: int | None = Field(default=None, ge=0, le=65535)
    #: Launcher: key id used to sign cues (0 = unsigned, never accepted).
    cue_key_id: int = Field(default=0, ge=0, le=65535)
    #: Launcher: cue keys by key id; values "hex:<hex>", "env:<VAR>" or "file:<path>".
    #: They also verify the launcher's acks and heartbeats (docs/icd/launcher.md §7.5).
    cue_keys: dict[int, str] = Field(default_factory=dict)
    #: Launcher: how far an ack's or heartbeat's LauncherTime may be from its
    #: receive time before it is dropped as ``auth_stale`` (ICD §7.5).
    reply_max_age_s: float = Field(default=1.0, gt=0, le=60)
    #: Launcher: accept an ICD v1 launcher's untagged acks and heartbeats
    #: (ICD §7.6). Off by default: a forged v1 heartbeat can hide a launcher's loss.
    accept_launcher_icd_v1: bool = False
    #: Releasability of this source's data (docs/partners.md); None: never released.
    markings: MarkingsConfig | None = None
    #: asterix: the radars on this stream by SAC/SIC ([[devices.sources]]);
    #: empty: every source is placed at ``ownship`` (one radar per device).
    sources: list[AsterixSourceConfig] = Field(default_factory=list)

    #: The codec compiled from ``codec`` at load time (None: the protocol takes none).
    _compiled: Any = PrivateAttr(default=None)

    @property
    def compiled_codec(self) -> Any:
        """The described protocol's codec, checked and compiled when the config was loaded."""
        return self._compiled

    @field_validator("protocol")
    @classmethod
    def _registered(cls, v: str) -> str:
        try:
            protocol_spec(v)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        return v

    @model_validator(mode="after")
    def _fits_protocol(self, info: ValidationInfo) -> DeviceConfig:
        """The protocol's transport kinds, its site and its codec description, checked
        here (gateway/protocols.py) so that no mistake waits until the device runs."""
        spec = protocol_spec(self.protocol)
        if self.transport.kind not in spec.transports:
            kinds = ", ".join(sorted(spec.transports))
            raise ValueError(f"transport.kind: {self.protocol} runs on {kinds}, not {self.transport.kind}")
        if spec.needs_site and self.site is None:
            raise ValueError(f"a {self.protocol} device needs a [site] block (lat_deg, lon_deg, alt_m)")
        base_dir = (info.context or {}).get("base_dir")
        self._compiled = load_codec(spec, self.codec, base_dir)
        return self

    @model_validator(mode="after")
    def _radar_needs_site(self) -> DeviceConfig:
        if self.sources:
            if self.protocol != "asterix":
                raise ValueError(f"sources: only an asterix device has a sources list, not {self.protocol}")
            ids = [(s.sac, s.sic) for s in self.sources]
            dup = sorted({f"{a}/{b}" for a, b in ids if ids.count((a, b)) > 1})
            if dup:
                raise ValueError(f"sources: SAC/SIC {', '.join(dup)} listed more than once")
            labels = [s.label for s in self.sources]
            if len(set(labels)) != len(labels):
                raise ValueError("sources: two sources have the same name")
        if self.protocol in ("serial_radar", "can_radar") and self.site is None:
            raise ValueError(f"a {self.protocol} device needs a [site] block (lat_deg, lon_deg, alt_m)")
        if self.protocol == "launcher" and self.transport.kind == "can":
            from drivers.launcher.codec_can import MAX_ID_OFFSET

            if self.can_id_offset > MAX_ID_OFFSET:
                raise ValueError(
                    f"can_id_offset {self.can_id_offset}: a launcher's highest DBC id plus it must stay "
                    f"within 11 bits (at most {MAX_ID_OFFSET})"
                )
        return self


# --- outputs and stages -------------------------------------------------------


class TimeSyncConfig(_Model):
    """A clock check for ``hilgw doctor`` (docs/deploy.md).

    ``kernel`` asks the kernel (adjtimex) whether the clock discipline of
    chrony/ntpd/timesyncd reports the clock synchronised within
    ``max_offset_ms``; ``ntp`` queries ``server`` (SNTP, RFC 4330) and
    compares the offset with ``max_offset_ms``.
    """

    method: Literal["kernel", "ntp"] = "kernel"
    server: str | None = None
    port: int = Field(default=123, ge=1, le=65535)
    max_offset_ms: float = Field(default=50.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0, le=30)

    @model_validator(mode="after")
    def _ntp_needs_server(self) -> TimeSyncConfig:
        if self.method == "ntp" and not self.server:
            raise ValueError('method = "ntp" needs server')
        return self


class FusionConfig(_Model):
    """How often the fused picture is computed and published."""

    engine: str = "default"
    publish_hz: float = Field(default=5.0, gt=0, le=100)
    report_queue: int = Field(default=100_000, ge=100)
    #: The reports (not batches) waiting for the next step at most: the fusion
    #: backlog bounded in memory (~2.3 kB a report in the gateway measured at
    #: the unpaced rate: the batch queued, its copy for the step, the allocator's
    #: share). The newest batch that does not fit is dropped and counted
    #: (hilgw_fusion_backlog_dropped_reports_total). 20,000 lets a step at 50,000
    #: reports/s (issue 18) take two periods at 5 Hz (0.4 s; ~0.27 s measured)
    #: before anything is dropped.
    max_backlog_reports: int = Field(default=20_000, ge=100)
    #: Where the engine steps (issue 18, gateway/fusion_worker.py): ``process``
    #: (its own process: ingest never waits on a step), ``thread``, or
    #: ``inline`` on the event loop (replay, and tests that step by hand).
    worker: Literal["process", "thread", "inline"] = "process"
    #: A picture that comes back from the worker later than this after its
    #: time is not published (counted ``hilgw_fusion_pictures_stale_total``):
    #: nothing downstream, the cue path least of all, acts on an old picture.
    max_picture_lag_s: float = Field(default=1.0, gt=0)
    #: A worker that has not answered a step (or started) within this is
    #: hung: it is killed and the fusion task restarts with a new one.
    worker_timeout_s: float = Field(default=10.0, gt=0)
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
    #: Scenario time zero, UTC ns; None: when the gateway starts. Gateways that
    #: share one (a federation bench: each site emulates its part of one
    #: scenario) see the same targets at the same times.
    epoch_ns: int | None = Field(default=None, gt=0)


# --- recording, metrics, web display (docs/recording.md, docs/operations.md) ---


class RecordingConfig(_Model):
    """MCAP recording of every raw frame and derived message (docs/recording.md).

    Files are ``<path stem>-<UTC start>-<part>.mcap`` beside ``path``; a new
    part starts when one holds ``rotate_mb`` of messages (counted before
    compression) or is ``rotate_s`` old."""

    path: Path
    rotate_mb: float = Field(default=512.0, gt=0)
    #: None: rotate by size only.
    rotate_s: float | None = Field(default=3600.0, gt=0)
    #: Bound of each bus subscription of the recorder; overflow is dropped and counted.
    queue: int = Field(default=100_000, ge=16)
    #: Also record the normalised sensor reports (SensorReportBatch per chunk).
    reports: bool = True


class MetricsConfig(_Model):
    """Prometheus ``/metrics`` and ``/healthz`` (docs/operations.md)."""

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class WebConfig(_Model):
    """The built-in situation display (docs/operations.md)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: Seconds of position history drawn behind each track.
    history_s: float = Field(default=60.0, gt=0, le=3600)
    #: Pushes per second to each open page.
    update_hz: float = Field(default=2.0, gt=0, le=20)
    #: Open pages (WebSockets) at most; one more is refused with 503. Each takes
    #: a file descriptor: keep it well below the process limit (LimitNOFILE in
    #: deploy/systemd/hilgw.service); the server also lowers it to half the soft
    #: RLIMIT_NOFILE it finds at start.
    max_clients: int = Field(default=200, ge=1, le=100_000)
    #: Snapshots queued for one page; a page this far behind is dropped.
    client_queue: int = Field(default=4, ge=1, le=64)
    #: A page that cannot take one snapshot in this time is dropped.
    send_timeout_s: float = Field(default=2.0, gt=0, le=60)
    #: Host names (``name`` or ``name:port``) accepted in the Host and Origin
    #: headers besides the served host, 127.0.0.1, localhost and [::1].
    allowed_hosts: list[str] = Field(default_factory=list)


class ScoringConfig(_Model):
    """Live truth scoring (gateway/score.py, gateway/scoring.py): on when present.

    The gateway subscribes to ``truth_topic`` (``hilgw.v1.TruthBatch``, e.g.
    from ``hilgw emulate --mqtt``) on its broker and publishes a
    ``hilgw.v1.ScoreReport`` on ``{prefix}/{gateway_id}/score``.
    """

    truth_topic: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_/.-]+$")
    #: OSPA / GOSPA cutoff c (m) and order p.
    cutoff_m: float = Field(default=2000.0, gt=0)
    order_p: float = Field(default=2.0, ge=1, le=10)
    #: Reports per second on the score topic.
    publish_hz: float = Field(default=1.0, gt=0, le=10)
    #: Track pictures further than this from the latest truth are not scored.
    max_truth_age_s: float = Field(default=2.0, gt=0)
    #: Bench mode: the gateway starts the truth publisher of its emulated scenario.
    emulated_truth: bool = True


class SupervisorConfig(_Model):
    """``[supervisor]``: restarts of the gateway's own tasks (fusion, cue, mqtt, ...).

    A failed task is restarted after a back-off that doubles from
    ``restart_initial_s`` to ``restart_max_s`` and starts over after a run of
    ``healthy_run_s`` or longer. ``max_restarts`` restarts of one task within
    ``restart_window_s`` make the gateway unhealthy (/healthz 503, no systemd
    watchdog pings) until they fall out of the window (docs/operations.md).
    """

    restart_initial_s: float = Field(default=0.5, gt=0, le=60)
    restart_max_s: float = Field(default=10.0, gt=0, le=600)
    healthy_run_s: float = Field(default=30.0, gt=0, le=86400)
    max_restarts: int = Field(default=5, ge=1, le=10000)
    restart_window_s: float = Field(default=300.0, gt=0, le=86400)


class GatewayConfig(_Model):
    gateway_id: str = Field(default="hilgw", pattern=_ID)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    health_interval_s: float = Field(default=1.0, gt=0)
    shutdown_timeout_s: float = Field(default=2.0, gt=0)
    devices: list[DeviceConfig] = Field(default_factory=list)
    mqtt: MqttConfig = MqttConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    fusion: FusionConfig = FusionConfig()
    emulation: EmulationConfig | None = None
    cue: CueConfig | None = None
    #: A clock check for ``hilgw doctor``; None: not checked.
    time_sync: TimeSyncConfig | None = None
    #: Each of these three is on when its section is present.
    recording: RecordingConfig | None = None
    metrics: MetricsConfig | None = None
    web: WebConfig | None = None
    #: Live truth scoring; on when present.
    scoring: ScoringConfig | None = None
    #: Partner feeds under release profiles (docs/partners.md).
    partners: list[PartnerConfig] = Field(default_factory=list)
    #: A theatre gateway: fuse these site gateways' pictures (docs/federation.md).
    federation: FederationConfig | None = None
    #: A core NATS fast path for pictures beside MQTT (docs/federation.md §5).
    nats: NatsConfig | None = None

    @model_validator(mode="after")
    def _federation_needs_mqtt(self) -> GatewayConfig:
        if not self.mqtt.enabled and (
            self.federation is not None or (self.cue is not None and self.cue.picture is not None)
        ):
            raise ValueError("[federation] and [cue.picture] need [mqtt] enabled: pictures arrive over MQTT")
        if self.nats is not None and not self.mqtt.enabled:
            raise ValueError("[nats] needs [mqtt] enabled: it is a fast path beside the MQTT session")
        if self.federation is not None:
            for s in self.federation.sites:
                if s.gateway_id == self.gateway_id:
                    raise ValueError(f"federation.sites: {s.gateway_id!r} is this gateway itself")
        return self

    @model_validator(mode="after")
    def _cue_only_own_launchers(self) -> GatewayConfig:
        """A gateway cues only the launchers it owns: each [[cue.launchers]] is a
        launcher device of this config (bench mode adds the scenario's at start)."""
        if self.cue is None or self.emulation is not None:
            return self
        own = {d.id for d in self.devices if d.protocol == "launcher" and d.enabled}
        for lc in self.cue.launchers:
            if lc.id not in own:
                raise ValueError(
                    f"cue.launchers[{lc.id}]: no launcher device with this id in [[devices]]; "
                    "a gateway cues only the launchers it owns"
                )
        return self

    @model_validator(mode="after")
    def _partners_apart(self) -> GatewayConfig:
        ids: set[str] = set()
        trees: dict[str, str] = {}
        for p in self.partners:
            if p.id in ids:
                raise ValueError(f"partner id {p.id!r} appears twice")
            ids.add(p.id)
            other = trees.setdefault(p.prefix, p.id)
            if other != p.id:
                raise ValueError(f"partners {other!r} and {p.id!r} share the topic tree {p.prefix!r}")
        return self

    @model_validator(mode="after")
    def _scoring_needs_mqtt(self) -> GatewayConfig:
        if self.scoring is not None and not self.mqtt.enabled:
            raise ValueError("[scoring] needs [mqtt] enabled: truth arrives, and scores leave, over MQTT")
        return self

    @model_validator(mode="after")
    def _can_ids_apart(self) -> GatewayConfig:
        """Two devices on one CAN bus must not share an arbitration id (after
        ``can_id_offset``): each driver would take the other's frames for its own."""
        buses: dict[tuple[str, str], list[DeviceConfig]] = {}
        for d in self.devices:
            t = d.transport
            if d.enabled and isinstance(t, CanTransportConfig) and d.protocol in _CAN_ID_PROTOCOLS:
                buses.setdefault((t.interface, str(t.channel)), []).append(d)
        shared = [devs for devs in buses.values() if len(devs) > 1]
        if not shared:
            return self
        from drivers.can_radar.icd import LAYOUTS
        from drivers.launcher.codec_can import BASE_IDS

        base = {"can_radar": set(LAYOUTS), "launcher": set(BASE_IDS)}
        for devs in shared:
            owner: dict[int, str] = {}
            for d in devs:
                ids = {d.compiled_codec.frame_id} if d.protocol == "can_dbc_radar" else base[d.protocol]
                for frame_id in sorted(ids):
                    arb = frame_id + d.can_id_offset
                    other = owner.setdefault(arb, d.id)
                    if other != d.id:
                        raise ValueError(
                            f"devices {other!r} and {d.id!r} share a CAN bus and arbitration id "
                            f"0x{arb:03X}; give one a can_id_offset that keeps them apart"
                        )
        return self

    @model_validator(mode="after")
    def _multicast_groups_apart(self) -> GatewayConfig:
        """Two ``udp_multicast`` CAN devices on different groups of one port can be
        told apart only where the transport can keep a socket to its own group
        (Linux: IP_MULTICAST_ALL, gateway/transports/can.py); elsewhere each
        would receive the other's frames, so the config is refused."""
        if sys.platform == "linux":
            return self
        seen: dict[int, tuple[str, str]] = {}
        for d in self.devices:
            t = d.transport
            if not (d.enabled and isinstance(t, CanTransportConfig) and t.interface == "udp_multicast"):
                continue
            port = int(t.options.get("port", _UDP_MULTICAST_PORT))
            group = str(t.channel)
            other = seen.setdefault(port, (d.id, group))
            if other[1] != group:
                raise ValueError(
                    f"devices {other[0]!r} and {d.id!r}: udp_multicast groups {other[1]} and {group} "
                    f"share port {port}, and on {sys.platform} each bus would receive both groups; "
                    "give one a different transport.options.port"
                )
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> GatewayConfig:
        seen: set[str] = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} appears twice")
            seen.add(d.id)
        return self


# --- loading ------------------------------------------------------------------

#: Protocols whose CAN arbitration ids are checked apart on a shared bus.
_CAN_ID_PROTOCOLS = ("can_radar", "launcher", "can_dbc_radar")

#: python-can's default udp_multicast port (can/interfaces/udp_multicast/bus.py).
_UDP_MULTICAST_PORT = 43113

#: Transport kinds pydantic puts into error locations (the union's tags).
_TRANSPORT_TAGS = frozenset({"serial", "udp", "memory", "can", "plugin"})


def parse_config(raw: dict[str, Any], source: str = "config", base_dir: Path | None = None) -> GatewayConfig:
    """Validate a parsed TOML document; raise ConfigError with a one-line message.

    ``base_dir``: where relative paths of described devices (a DBC, a codec
    file) are found; the config file's folder (None: the working directory)."""
    try:
        config = GatewayConfig.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise one_line(exc, raw, source, _TRANSPORT_TAGS) from None
    if config.fusion.engine == "default":
        # The engine's parameters are an untyped table: check them now, not
        # when the fusion task starts (its keys are ``fusion.<field>``).
        from gateway.fusion.config import config_from_params

        try:
            config_from_params(config.fusion.params)
        except ConfigError as exc:
            key = exc.key.replace("fusion.", "fusion.params.", 1)
            raise ConfigError(f"{source}: {key}", exc.reason) from None
        except TypeError as exc:  # a dataclass field given twice cannot happen; a bad one can
            raise ConfigError(f"{source}: fusion.params", str(exc)) from None
    return config


def load_config(path: str | Path) -> GatewayConfig:
    """Load and validate a TOML config file."""
    return parse_config(read_toml(path), source=str(path), base_dir=Path(path).parent)


def default_config() -> GatewayConfig:
    """The embedded default of ``hilgw run``: the bundled emulated scenario, an
    embedded broker, the situation display and /metrics, all on 127.0.0.1.

    The usual ports (1883, 8080, 9464) are used when free, else free ones (the
    start-up log and the terminal summary give the addresses)."""
    return parse_config(
        {
            "gateway_id": "hilgw-demo",
            "mqtt": {"broker": "embedded", "port": 1883},
            "emulation": {"scenario": "builtin:demo", "transport": "pty"},
            "web": {"port": _port_or_free(8080)},
            "metrics": {"port": _port_or_free(9464)},
        },
        source="<default>",
    )


def _port_or_free(port: int) -> int:
    """``port`` if nothing listens on 127.0.0.1:port, else 0 (an ephemeral one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port

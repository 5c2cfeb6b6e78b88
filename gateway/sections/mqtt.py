"""Config models of the MQTT output: ``[mqtt]`` and ``[mqtt.tls]`` (docs/config.md).

A module of its own, below :mod:`gateway.config` (which re-exports both), so
that the partner broker block (gateway/sections/partners.py) takes the same
TLS keys without importing the whole configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hilgw.tomlconfig import StrictModel

__all__ = ["MqttConfig", "MqttTlsConfig"]


class MqttTlsConfig(StrictModel):
    """TLS to the broker (docs/deploy.md). The broker's certificate is always
    verified against ``ca_file``; ``cert_file``/``key_file`` are the gateway's
    own identity when the broker requires client certificates. Files are not
    opened at load time: ``hilgw doctor`` checks them and says what to fix."""

    ca_file: Path
    cert_file: Path | None = None
    #: None: the key is in ``cert_file`` (one PEM holding both).
    key_file: Path | None = None
    key_password: str | None = None
    #: Check that the broker certificate names ``mqtt.host`` (DNS or IP SAN).
    verify_hostname: bool = True
    #: The oldest protocol version offered (TLS 1.2 is the floor here).
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttTlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if self.key_password is not None and self.cert_file is None:
            raise ValueError("key_password needs cert_file")
        return self


class MqttConfig(StrictModel):
    """Where the gateway publishes. ``broker = "embedded"`` starts mosquitto as
    a child process on 127.0.0.1 (bench use only; gateway/outputs/broker.py)."""

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
    #: A connection that lived this long was healthy: its loss restarts the back-off.
    reconnect_reset_s: float = Field(default=10.0, gt=0, le=3600)
    #: Brokers to try in order ("host:port"); a failed attempt moves to the next.
    #: Empty: ``host``/``port``.
    hosts: list[str] = Field(default_factory=list)
    #: clean_session = False with a stable client id: the broker keeps the
    #: subscriptions and queues QoS 1 messages while the gateway is away.
    persistent_session: bool = True
    #: QoS 1 messages published and not yet acknowledged, at most.
    max_inflight: int = Field(default=100, ge=1, le=65535)
    #: aiomqtt's time-out for the connect (failover to the next host) and each PUBACK/SUBACK.
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    #: QoS of the TrackBatch topic: 0 (the freshest picture matters most) or 1
    #: (a theatre gateway must get every picture; docs/federation.md).
    tracks_qos: Literal[0, 1] = 0
    #: The operator command topics get an MQTT connection of their own (client id
    #: ``{client_id}-cmd``), so no telemetry is ever queued in front of a HOLD
    #: (docs/cue-path.md §11; gateway/outputs/commands.py ``command_session``).
    command_connection: bool = True
    #: SO_RCVBUF of the command connection, bytes (0: the OS default, autotuned):
    #: how much of a command flood the kernel may hold in front of a HOLD.
    command_rcvbuf_bytes: int = Field(default=8192, ge=0, le=16 * 2**20)
    #: More messages than this a second on the command connection (operators send
    #: a few a minute): it is a flood; the connection is dropped and made again at
    #: once, which discards what the broker had buffered for it (0: never).
    command_shed_above_per_s: int = Field(default=200, ge=0, le=1_000_000)
    #: One command lane per operator identity (docs/cue-path.md §12): ``auto`` (the
    #: default) gives every operator id bound in the keys file (``operator = "..."``,
    #: the station's certificate CN) its own topics ``{prefix}/{gateway_id}/lane/{id}/
    #: authority`` and ``.../cue`` and its own MQTT connection; a command there must be
    #: signed by a key bound to that id. ``off``: the shared command topics only.
    command_lanes: Literal["auto", "off"] = "auto"
    #: Also read the shared command topics (``.../authority/command``, ``.../cue/command``)
    #: for tools not yet on a lane. Their own connection: a flood there delays no lane.
    command_shared_topics: bool = True
    publish_reports: bool = True
    enabled: bool = True
    #: None: plain TCP (bench on 127.0.0.1 only); set it for any real network.
    tls: MqttTlsConfig | None = None

    @field_validator("hosts")
    @classmethod
    def _host_port(cls, hosts: list[str]) -> list[str]:
        for entry in hosts:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{entry!r} is not host:port (port 1..65535)")
        return hosts

    @model_validator(mode="after")
    def _no_tls_on_embedded(self) -> MqttConfig:
        if self.tls is not None and self.broker == "embedded":
            raise ValueError("the embedded broker speaks plain TCP on 127.0.0.1; remove [mqtt.tls]")
        return self

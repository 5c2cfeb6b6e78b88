"""``[federation]``: the site pictures a theatre gateway fuses (docs/federation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.sections.mqtt import MqttTlsConfig
from gateway.sections.partners import MarkingsConfig

__all__ = ["FederationConfig", "NatsAuthConfig", "NatsConfig", "NatsTlsConfig", "SiteConfig"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SiteConfig(_Model):
    """One site gateway whose TrackBatch this gateway takes as a sensor."""

    gateway_id: str = Field(pattern=_ID)
    topic_prefix: str = Field(default="hilgw", pattern=r"^[A-Za-z0-9_/-]+$")
    #: Site track statuses taken (tentative tracks stay at their site). Not
    #: coasting by default: a coasting site track is its site's prediction,
    #: no new measurement; fused as one, it kept its theatre track confirmed
    #: as long as the site coasted it and made the sites' clutter tracks
    #: confirmed theatre tracks (benchmarks/federation/RESULTS.md). The
    #: theatre coasts its track itself when the site's track is left out.
    statuses: list[Literal["tentative", "confirmed", "coasting"]] = Field(
        default_factory=lambda: list[Literal["tentative", "confirmed", "coasting"]](["confirmed"])
    )
    #: Releasability of what this site contributes (docs/partners.md); None: never released.
    markings: MarkingsConfig | None = None


class FederationConfig(_Model):
    """A theatre gateway: fuse the pictures of ``sites`` into one of its own."""

    sites: list[SiteConfig] = Field(min_length=1)
    #: A site picture older than this on arrival is dropped ("stale").
    max_batch_age_s: float = Field(default=10.0, gt=0, le=3600)
    #: A skipped picture is counted lost ("gap") when it has not come this long
    #: after a newer one (a failover redelivers out of order: "late").
    gap_wait_s: float = Field(default=30.0, gt=0, le=3600)
    #: A site picture larger than this is rejected ("too_large").
    max_tracks: int = Field(default=20_000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _unique(self) -> FederationConfig:
        seen: set[str] = set()
        for s in self.sites:
            if s.gateway_id in seen:
                raise ValueError(f"site {s.gateway_id!r} appears twice")
            seen.add(s.gateway_id)
        return self


class NatsTlsConfig(MqttTlsConfig):
    """``[nats.tls]``: TLS to the cluster's client listeners; the keys of
    ``[mqtt.tls]`` (the servers verified against ``ca_file``, never unverified;
    ``cert_file``/``key_file`` the gateway's identity when the servers require
    client certificates) and ``server_name``. Files are read when the link
    connects (an error names the key) and by ``hilgw doctor``."""

    #: The name the servers' certificates must carry, when ``servers`` lists
    #: addresses their certificates do not name (one name for the whole cluster).
    server_name: str | None = Field(default=None, min_length=1, max_length=253)


class NatsAuthConfig(_Model):
    """``[nats.auth]``: how the gateway proves who it is to the cluster; one of
    ``user`` with ``password_file`` or ``password_env``, ``creds_file`` (a
    NATS ``.creds`` file: user JWT and nkey seed) or ``nkey_seed_file``.
    Secrets are never written in the config; they are read when the link
    connects."""

    user: str | None = Field(default=None, min_length=1, max_length=256)
    #: A file holding the password (its first line); mode 0600, owned by the service user.
    password_file: Path | None = None
    #: An environment variable holding the password (systemd ``LoadCredential``/``Environment``).
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    #: A NATS ``.creds`` file (decentralised JWT auth); needs the ``nkeys`` package.
    creds_file: Path | None = None
    #: A file holding an nkey seed (``SU...``); needs the ``nkeys`` package.
    nkey_seed_file: Path | None = None

    @model_validator(mode="after")
    def _one_method(self) -> NatsAuthConfig:
        if (self.password_file is not None) + (self.password_env is not None) > 1:
            raise ValueError("password_file and password_env: set one")
        password = self.password_file is not None or self.password_env is not None
        if password and self.user is None:
            raise ValueError("a password needs user")
        if self.user is not None and not password:
            raise ValueError("user needs password_file or password_env")
        methods = [self.user is not None, self.creds_file is not None, self.nkey_seed_file is not None]
        if sum(methods) != 1:
            raise ValueError("set exactly one of: user (with a password), creds_file, nkey_seed_file")
        return self


class NatsConfig(_Model):
    """``[nats]``: a core NATS fast path beside the MQTT session (gateway/federation/fastpath.py).

    A site gateway publishes its picture on it too; a theatre (``[federation]``)
    or a cue picture bridge (``[cue.picture]``) takes pictures from it as well
    as from MQTT. JetStream-free: it fails over between nodes in milliseconds."""

    #: The cluster's NATS client listeners, "host:port", in order of preference.
    servers: list[str] = Field(min_length=1, max_length=64)
    #: Publish this gateway's TrackBatch on ``{topic prefix}.{gateway id}.tracks_live``.
    publish_tracks: bool = True
    connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    #: Wait before trying a server again that was tried this recently.
    reconnect_wait_s: float = Field(default=0.1, gt=0, le=60)
    #: A silent peer (no TCP reset: a cut cable) is declared dead after two
    #: unanswered pings of this interval.
    ping_interval_s: float = Field(default=2.0, gt=0, le=600)
    #: Outgoing messages held while the link is down; the oldest goes first.
    queue_size: int = Field(default=256, ge=1, le=100_000)
    #: None: plain TCP (a bench on 127.0.0.1); set it for any real network (docs/federation.md §7).
    tls: NatsTlsConfig | None = None
    #: None: no credentials (a cluster without authorization).
    auth: NatsAuthConfig | None = None

    @model_validator(mode="after")
    def _hosts(self) -> NatsConfig:
        for s in self.servers:
            host, _, port = s.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"nats.servers: {s!r} is not host:port")
        return self

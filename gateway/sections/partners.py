"""Configuration of partner feeds (``[[partners]]``) and source markings
(``[devices.markings]``); docs/partners.md.

Validated at load time with the rest of :mod:`gateway.config`. Everything a
profile does not grant is withheld: the defaults release nothing but the
position of confirmed tracks from sources explicitly marked releasable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gateway.sections.mqtt import MqttTlsConfig  # the same TLS keys as [mqtt.tls]
from hilgw.tomlconfig import StrictModel

__all__ = [
    "CLASSIFICATIONS",
    "CircleArea",
    "MarkingsConfig",
    "PartnerBrokerConfig",
    "PartnerConfig",
    "PartnerInboundConfig",
    "PolygonArea",
    "ReleaseProfile",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

#: Classification names, least restrictive first; their value is the
#: hilgw.v1.Classification enum value (1..5).
CLASSIFICATIONS = ("UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP_SECRET")
ClassificationName = Literal["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP_SECRET"]
ReleasableField = Literal["position", "velocity", "status"]
ReleasableStatus = Literal["tentative", "confirmed", "coasting"]


class _Model(StrictModel):
    """No inf/nan (StrictModel): a quantum or radius of inf/nan would silently
    release everything (or nothing); refused at load, naming the key."""


class MarkingsConfig(_Model):
    """Releasability of one source (a device), carried with its data through fusion."""

    classification: ClassificationName
    #: Partner ids this source's data may be released to. Empty: to none.
    releasable_to: list[str] = Field(default_factory=list)


class CircleArea(_Model):
    """A circle on the ellipsoid: tracks whose geodetic position is within
    ``radius_m`` (great-circle, mean Earth radius) of the centre."""

    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=20_000_000)


class PolygonArea(_Model):
    """A polygon of (lat_deg, lon_deg) vertices, tested in the lat/lon plane.

    Meant for a region (a sea area, an FIR): it may not span 180 degrees of
    longitude or more, nor cross the antimeridian or a pole.
    """

    vertices: list[tuple[float, float]] = Field(min_length=3, max_length=1000)

    @model_validator(mode="after")
    def _sane(self) -> PolygonArea:
        for lat, lon in self.vertices:
            if not (-90 < lat < 90 and -180 <= lon <= 180):
                raise ValueError(f"vertex ({lat}, {lon}) outside lat (-90, 90), lon [-180, 180]")
        lons = [lon for _, lon in self.vertices]
        if max(lons) - min(lons) >= 180:
            raise ValueError("polygon spans 180 degrees of longitude or more; split it")
        return self


class ReleaseProfile(_Model):
    """What may leave for one partner (docs/partners.md §3)."""

    #: Fields released per track; "position" is always required.
    fields: list[ReleasableField] = Field(default_factory=lambda: list[ReleasableField](["position"]))
    #: Track statuses released.
    statuses: list[ReleasableStatus] = Field(default_factory=lambda: list[ReleasableStatus](["confirmed"]))
    #: Precision: positions in whole multiples of this (ECEF metres).
    position_quantum_m: float = Field(default=100.0, ge=1.0, le=1e6)
    velocity_quantum_mps: float = Field(default=5.0, ge=0.01, le=1e4)
    #: The picture time is rounded to this; states are carried to that time.
    time_quantum_s: float = Field(default=1.0, ge=0.001, le=3600)
    #: Each picture leaves this long after it was taken.
    delay_s: float = Field(default=0.0, ge=0, le=3600)
    #: At most this many pictures per second.
    max_rate_hz: float = Field(default=1.0, gt=0, le=20)
    #: The highest classification of any contributing source that may leave.
    max_classification: ClassificationName = "UNCLASSIFIED"
    #: A track fed by sources of which only some are releasable to this
    #: partner: "withhold" it (default) or "release" it.
    mixed_sources: Literal["withhold", "release"] = "withhold"
    #: Geographic area released (one of the two, or none for anywhere).
    circle: CircleArea | None = None
    polygon: PolygonArea | None = None

    @model_validator(mode="after")
    def _check(self) -> ReleaseProfile:
        if "position" not in self.fields:
            raise ValueError('fields must include "position"')
        if self.circle is not None and self.polygon is not None:
            raise ValueError("give circle or polygon, not both")
        if not self.statuses:
            raise ValueError("statuses is empty: nothing would be released")
        return self

    @property
    def max_classification_value(self) -> int:
        return CLASSIFICATIONS.index(self.max_classification) + 1


class PartnerBrokerConfig(_Model):
    """The partner's own output: its own broker (or a bridge topic tree on
    the gateway's broker), its own TLS identity."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    #: Topic tree of this partner; None: ``partners/<id>``.
    topic_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_/-]+$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    queue_size: int = Field(default=100, ge=1, le=100_000)
    #: TLS to this broker (same keys as [mqtt.tls]); None: plain TCP (127.0.0.1 only).
    tls: MqttTlsConfig | None = None


class PartnerInboundConfig(_Model):
    """A partner's own assessments, accepted as a low-trust source."""

    #: 1-sigma floors applied to what the partner claims (m, m/s).
    min_sigma_position_m: float = Field(default=500.0, gt=0, le=1e6)
    min_sigma_velocity_mps: float = Field(default=50.0, gt=0, le=1e4)
    #: Assessments older than this on arrival are dropped ("stale").
    max_age_s: float = Field(default=10.0, gt=0, le=3600)
    #: At most this many tracks per message (larger ones are rejected).
    max_tracks: int = Field(default=2000, ge=1, le=100_000)
    #: Markings of the partner's data inside this gateway.
    markings: MarkingsConfig = MarkingsConfig(classification="UNCLASSIFIED")


class PartnerConfig(_Model):
    """One partner: where its feed goes, what it may get, what it sends back."""

    id: str = Field(pattern=_ID)
    #: The name the partner sees as the releasing party (never the gateway id).
    release_as: str = Field(pattern=_ID)
    broker: PartnerBrokerConfig = Field(default_factory=lambda: PartnerBrokerConfig())
    profile: ReleaseProfile = ReleaseProfile()
    #: Hash-chained audit of every release (``hilgw audit verify`` reads it).
    audit_log: Path
    #: Accept the partner's assessments on ``<prefix>/inbound``; None: do not subscribe.
    inbound: PartnerInboundConfig | None = None
    enabled: bool = True

    @property
    def prefix(self) -> str:
        return self.broker.topic_prefix or f"partners/{self.id}"

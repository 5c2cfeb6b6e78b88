"""Config models of the ship and ASTERIX feed blocks of a device (``ownship``, ``asterix``, ``sources``).

Re-exported by :mod:`gateway.config`, whose ``DeviceConfig`` holds them.
Reference: docs/config.md and docs/icd/frigate-feed.md.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, model_validator

from gateway.sections.partners import MarkingsConfig
from hilgw.tomlconfig import StrictModel

log = logging.getLogger(__name__)

__all__ = ["AsterixConfig", "AsterixSourceConfig", "GeoPointConfig", "OwnShipConfig"]


class GeoPointConfig(StrictModel):
    """A geodetic point (WGS-84, height above the ellipsoid)."""

    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)
    alt_m: float = Field(default=0.0, ge=-500, le=10000)


class OwnShipConfig(StrictModel):
    """Own-ship state for ship-relative reports (docs/icd/frigate-feed.md).

    Either ``source`` names an ``nmea`` device, or the position is fixed here
    (``lat_deg``/``lon_deg``/``alt_m`` with ``heading_deg``/``pitch_deg``/``roll_deg``).
    """

    source: str | None = None
    lat_deg: float | None = Field(default=None, ge=-90, le=90)
    lon_deg: float | None = Field(default=None, ge=-180, le=180)
    alt_m: float = Field(default=0.0, ge=-500, le=10000)
    heading_deg: float = Field(default=0.0, ge=-360, le=360)
    pitch_deg: float = Field(default=0.0, ge=-90, le=90)
    roll_deg: float = Field(default=0.0, ge=-180, le=180)
    #: Radar antenna from the navigation reference point, ship body (forward, right, up) m.
    lever_arm_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: 1-sigma horizontal position = HDOP x uere_m; sigma_horizontal_m without HDOP or when fixed.
    uere_m: float = Field(default=4.0, gt=0)
    sigma_horizontal_m: float = Field(default=5.0, gt=0)
    sigma_vertical_m: float = Field(default=5.0, gt=0)
    sigma_velocity_mps: float = Field(default=0.3, gt=0)
    sigma_heading_deg: float = Field(default=0.2, gt=0)
    sigma_attitude_deg: float = Field(default=0.1, gt=0)
    #: A report further than this from the navigation samples is dropped ("ownship_stale").
    max_age_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> OwnShipConfig:
        fixed = self.lat_deg is not None or self.lon_deg is not None
        if (self.source is None) == (not fixed) or (fixed and (self.lat_deg is None or self.lon_deg is None)):
            raise ValueError("give either source (an nmea device id) or a fixed lat_deg and lon_deg")
        return self


class AsterixConfig(StrictModel):
    """ASTERIX feed parameters (docs/icd/frigate-feed.md, docs/icd/asterix.md)."""

    #: Category -> [major, minor] edition; defaults: drivers.asterix.DEFAULT_EDITIONS.
    editions: dict[int, tuple[int, int]] = Field(default_factory=dict)
    #: What CAT048 THETA is measured from: "north" (stabilised, true north, level),
    #: "bow" (the ship's heading, level) or "deck" (the ship's body frame).
    azimuth_reference: Literal["north", "bow", "deck"] = "north"
    #: Origin of CAT062 I062/100 x/y: "ownship" (the ship at the report time) or a point.
    cat062_origin: Literal["ownship"] | GeoPointConfig | None = None
    sigma_range_m: float = Field(default=50.0, gt=0)
    sigma_azimuth_mrad: float = Field(default=2.0, gt=0)
    sigma_height_m: float = Field(default=300.0, gt=0)
    sigma_ground_speed_mps: float = Field(default=5.0, gt=0)
    sigma_track_heading_deg: float = Field(default=3.0, gt=0)
    sigma_vertical_speed_mps: float = Field(default=50.0, gt=0)
    #: Velocity sigma per axis when a report carries no velocity (value 0).
    unknown_speed_sigma_mps: float = Field(default=300.0, gt=0)
    #: CAT062 defaults where I062/500 or an altitude item is absent.
    default_sigma_xy_m: float = Field(default=100.0, gt=0)
    default_sigma_v_mps: float = Field(default=10.0, gt=0)
    #: CAT062 altitude without a usable height item; None: unknown (below).
    default_altitude_m: float | None = None
    default_altitude_sigma_m: float = Field(default=3000.0, gt=0)
    sigma_flight_level_m: float = Field(default=150.0, gt=0)
    #: A report whose height item is absent, out of its range or saturated has
    #: an unknown height, up to this (gateway/normalise_ship.py, issue 13).
    unknown_height_max_m: float = Field(default=1.0e6, gt=0, le=1.0e7)
    #: Above this height, faster than this over ground, or of unknown height, a
    #: target is not taken to fly level: its vertical-speed sigma is
    #: ``high_vertical_speed_sigma_mps`` instead of ``sigma_vertical_speed_mps``.
    air_ceiling_m: float = Field(default=30000.0, gt=0)
    air_speed_max_mps: float = Field(default=1000.0, gt=0)
    high_vertical_speed_sigma_mps: float = Field(default=3000.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        # Retired in issue 13: a plot without a height is now the Gaussian of
        # its range-sphere arc, not an elevation of 0 with this sigma. A config
        # written before still loads; the key is ignored, with a warning.
        if isinstance(data, dict) and "sigma_elevation_no_height_deg" in data:
            data = {k: v for k, v in data.items() if k != "sigma_elevation_no_height_deg"}
            log.warning(
                "asterix.sigma_elevation_no_height_deg is no longer used: a plot without a usable "
                "height is placed on its range arc (docs/icd/frigate-feed.md); remove the key"
            )
        return data


class AsterixSourceConfig(StrictModel):
    """One radar (or SDPS) on a multi-source ASTERIX stream, by its data source
    identifier I0xx/010 SAC/SIC (docs/icd/frigate-feed.md, "Many radars on one stream").

    Its reports are placed at ``site`` (a fixed radar) or at ``ownship`` (the
    own ship of a moving platform: an NMEA ``source`` or a fixed position);
    a source with neither may only send CAT062 WGS-84 tracks (CAT048 plots of
    it are counted ``no_site``). ``sigma_*`` override the device's
    ``[asterix]`` values for this radar; ``markings`` its releasability.
    """

    sac: int = Field(ge=0, le=255)
    sic: int = Field(ge=0, le=255)
    #: Label in metrics, health and the summary (default "<sac>.<sic>").
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    site: GeoPointConfig | None = None
    ownship: OwnShipConfig | None = None
    azimuth_reference: Literal["north", "bow", "deck"] | None = None
    sigma_range_m: float | None = Field(default=None, gt=0)
    sigma_azimuth_mrad: float | None = Field(default=None, gt=0)
    sigma_height_m: float | None = Field(default=None, gt=0)
    #: No service message (CAT034/CAT065) for this long, after the first: DOWN.
    #: None: three antenna rotations as measured, at least ``heartbeat_timeout_s``.
    service_timeout_s: float | None = Field(default=None, gt=0)
    markings: MarkingsConfig | None = None

    @property
    def label(self) -> str:
        """The source's name in metrics and health."""
        return self.name if self.name is not None else f"{self.sac}.{self.sic}"

    @model_validator(mode="after")
    def _one_place(self) -> AsterixSourceConfig:
        if self.site is not None and self.ownship is not None:
            raise ValueError(f"source {self.sac}/{self.sic}: give site or ownship, not both")
        return self

"""Configuration of the cue path (``[cue]`` in the gateway TOML; docs/cue-path.md §7).

Validated once at load time with the rest of :mod:`gateway.config`, which
includes :class:`CueConfig` as ``GatewayConfig.cue``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hilgw.tomlconfig import StrictModel

__all__ = [
    "CoverageConfig",
    "CueConfig",
    "CuePictureConfig",
    "CueRulesConfig",
    "InhibitConfig",
    "LauncherCueConfig",
    "TimeSyncConfig",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
InhibitKind = Literal["launcher_heartbeat", "sensors", "time_sync"]
Category = Literal["ballistic", "constant_velocity", "unspecified"]


class _Model(StrictModel):
    """Unknown keys, non-finite and absurdly large numbers refused (hilgw.tomlconfig)."""


class CoverageConfig(_Model):
    """A launcher's configured coverage volume: a sector around its site.

    A track is inside when its slant range, its azimuth (clockwise from true
    north, from ``az_from_deg`` to ``az_to_deg``, wrapping through 360), its
    elevation and its height above the WGS-84 ellipsoid are all within bounds.
    This is a configured filter, not a model of any weapon.
    """

    lat_deg: float = Field(ge=-90, le=90)
    lon_deg: float = Field(ge=-180, le=180)
    alt_m: float = Field(ge=-500, le=10000)
    min_range_m: float = Field(default=0.0, ge=0)
    max_range_m: float = Field(gt=0)
    az_from_deg: float = Field(default=0.0, ge=0, le=360)
    az_to_deg: float = Field(default=360.0, ge=0, le=360)
    min_elevation_deg: float = Field(default=-90.0, ge=-90, le=90)
    max_elevation_deg: float = Field(default=90.0, ge=-90, le=90)
    min_height_m: float = -1000.0
    max_height_m: float = 2_000_000.0

    @model_validator(mode="after")
    def _ordered(self) -> CoverageConfig:
        if self.min_range_m >= self.max_range_m:
            raise ValueError("min_range_m must be below max_range_m")
        if self.min_elevation_deg > self.max_elevation_deg:
            raise ValueError("min_elevation_deg must not exceed max_elevation_deg")
        if self.min_height_m >= self.max_height_m:
            raise ValueError("min_height_m must be below max_height_m")
        return self


class LauncherCueConfig(_Model):
    """One launcher the cue path may cue. ``id`` is the launcher device id."""

    id: str = Field(pattern=_ID)
    #: Unused since one MAC per cue (docs/cue-path.md §3): cues are signed once, on the
    #: wire, with the launcher device's ``cue_keys``. Accepted (with a warning at start)
    #: so that older configs still load.
    key_id: str | None = Field(default=None, min_length=1)
    coverage: CoverageConfig
    #: No heartbeat for this long inhibits cues to the launcher (issue 5 §4).
    heartbeat_timeout_s: float = Field(default=1.0, gt=0, le=60)


class CueRulesConfig(_Model):
    """Which system tracks are candidates for a cue."""

    require_confirmed: bool = True
    min_quality: float = Field(default=0.5, ge=0, le=1)
    #: Track categories allowed (motion model of the system track); empty: any.
    categories: list[Category] = Field(default_factory=list)
    #: A track whose state is older than this (against its batch time) is not a candidate.
    max_track_age_s: float = Field(default=2.0, gt=0)
    #: The whole picture older than this (no TrackBatch received) ends every cue.
    max_picture_age_s: float = Field(default=2.0, gt=0)
    #: A track fed only by low-trust sources (a partner's assessments,
    #: docs/partners.md §6) is a candidate only when this is true.
    allow_low_trust_only: bool = False
    #: A track with fewer distinct contributing sources is not a candidate
    #: (``single_source``); at least 2 with a theatre picture (``[cue.picture]``).
    min_sources: int = Field(default=1, ge=1, le=100)


class TimeSyncConfig(_Model):
    """How the gateway knows its clock is synchronised.

    ``none`` trusts the clock (bench use). ``command`` runs ``command`` every
    ``interval_s``; exit status 0 means synchronised (e.g. ``chronyc waitsync
    1 0.01``: chrony synchronised with a correction under 10 ms). A failed,
    timed-out or overdue check is a loss of time sync.
    """

    kind: Literal["none", "command"] = "none"
    command: list[str] = Field(default_factory=lambda: ["chronyc", "waitsync", "1", "0.01"])
    interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)


class InhibitConfig(_Model):
    #: Evaluation period of the inhibit timer (<= 100 ms keeps the 250 ms reaction).
    tick_s: float = Field(default=0.1, gt=0, le=0.1)
    #: A contributing sensor silent (in the picture) for this long counts as lost.
    sensor_timeout_s: float = Field(default=3.0, gt=0)
    #: Which inhibits also drop authority to HOLD.
    drop_to_hold_on: list[InhibitKind] = Field(default_factory=lambda: list[InhibitKind](["time_sync"]))
    time_sync: TimeSyncConfig = TimeSyncConfig()


class CuePictureConfig(_Model):
    """Cue on another gateway's picture (a theatre's), docs/federation.md §4.

    The cue path takes its tracks from ``{topic_prefix}/{gateway_id}/tracks``
    on this gateway's broker instead of its own fusion. Authority, inhibits,
    rules and the audit stay here, and cues go only to this gateway's own
    launchers.
    """

    gateway_id: str = Field(pattern=_ID)
    topic_prefix: str = Field(default="hilgw", pattern=r"^[A-Za-z0-9_/-]+$")
    #: Accept ``rules.min_sources = 1`` (single-source theatre tracks may cue).
    allow_single_source: bool = False


class CueConfig(_Model):
    """``[cue]``: the engagement-cue path (docs/cue-path.md)."""

    enabled: bool = True
    keys_file: Path
    #: keys_file may be a symbolic link (refused by default: gateway/cue/keyfile.py).
    keys_file_symlink: bool = False
    audit_path: Path
    launchers: list[LauncherCueConfig] = Field(default_factory=list)
    rules: CueRulesConfig = CueRulesConfig()
    inhibit: InhibitConfig = InhibitConfig()
    #: Operator commands older (or further in the future) than this are rejected.
    command_max_age_s: float = Field(default=5.0, gt=0, le=300)
    command_max_future_s: float = Field(default=2.0, ge=0, le=300)
    #: A cue waiting for approval longer than this expires.
    approval_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    #: Validity window of a cue from the moment it is sent.
    cue_validity_s: float = Field(default=5.0, gt=0, le=600)
    #: Bounded: a launcher that takes longer than a minute to ack is not acking.
    ack_timeout_s: float = Field(default=0.5, gt=0, le=60)
    max_retries: int = Field(default=2, ge=0, le=10)
    #: After a nack or a failure, the same track/launcher pair waits this long.
    retry_cooldown_s: float = Field(default=2.0, ge=0, le=3600)
    #: The local hold-fire switch (docs/cue-path.md §4): a UNIX socket (mode 0600)
    #: that takes ``HOLD`` without the broker; ``hilgw authority hold --local``.
    local_hold_socket: Path | None = None
    #: SIGUSR1 to the gateway is a local HOLD too.
    local_hold_signal: bool = True
    #: The audit log's live file is rotated into ``<audit_path>.<k>`` at this size;
    #: the hash chain runs on through the parts (docs/cue-path.md §7).
    audit_max_bytes: int = Field(default=64 * 2**20, ge=4096, le=2**40)
    #: Authority above HOLD survives this long without the broker link that
    #: carries operator commands, then falls to HOLD (docs/cue-path.md §11).
    operator_link_timeout_s: float = Field(default=10.0, gt=0, le=3600)

    #: Cue on another gateway's picture; None: this gateway's own.
    picture: CuePictureConfig | None = None

    @model_validator(mode="after")
    def _theatre_needs_sources(self) -> CueConfig:
        if self.picture is not None and self.rules.min_sources < 2 and not self.picture.allow_single_source:
            raise ValueError(
                "rules.min_sources must be at least 2 with a [cue.picture] (a theatre track held by one "
                "source alone must not cue); set picture.allow_single_source = true to accept 1"
            )
        return self

    @model_validator(mode="after")
    def _unique_launchers(self) -> CueConfig:
        seen: set[str] = set()
        for launcher in self.launchers:
            if launcher.id in seen:
                raise ValueError(f"launcher id {launcher.id!r} appears twice")
            seen.add(launcher.id)
        return self

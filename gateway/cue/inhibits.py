"""Inhibit conditions (pure): which launchers and tracks may not be cued now.

docs/cue-path.md §5. The core evaluates these on every event and on a timer
of at most 100 ms, so a condition takes effect within 250 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.sections.cue import LauncherCueConfig
from hilgw.v1 import track_pb2

__all__ = ["LOSS_KINDS", "LauncherState", "launcher_inhibits", "sensors_lost"]

#: Inhibits that count as a loss of the launcher (``drop_to_hold_on = ["launcher_heartbeat"]``).
LOSS_KINDS = frozenset({"heartbeat_lost", "link_down", "launcher_fault"})


@dataclass
class LauncherState:
    """What the cue path knows of one launcher."""

    config: LauncherCueConfig
    sequence: int = 0  # last sequence used on the wire (cues and cancels)
    last_heartbeat_mono: int | None = None
    #: Heartbeats that failed verification since the last one that passed (ICD v2 §7.5).
    unverified_heartbeats: int = 0
    link_up: bool = True
    fault: str = ""
    inhibits: set[str] = field(default_factory=set)


def launcher_inhibits(lau: LauncherState, now_mono_ns: int, time_sync_ok: bool) -> set[str]:
    """The inhibits that apply to a launcher at ``now_mono_ns``."""
    out: set[str] = set()
    if not lau.link_up:
        out.add("link_down")
    elif lau.last_heartbeat_mono is None:
        out.add("no_heartbeat")
    elif now_mono_ns - lau.last_heartbeat_mono > lau.config.heartbeat_timeout_s * 1e9:
        out.add("heartbeat_lost")
    if "heartbeat_lost" in out and lau.unverified_heartbeats:
        # Says why in the audit: heartbeats came, none verified (ICD v2 §7.5).
        # Not a loss kind of its own: it only ever comes with heartbeat_lost.
        out.add("heartbeat_unverified")
    if lau.fault:
        out.add("launcher_fault")
    if not time_sync_ok:
        out.add("time_sync")
    return out


def sensors_lost(track: track_pb2.SystemTrack, down: set[str], batch_ns: int, timeout_s: float) -> bool:
    """True when every sensor contributing to the track is down or silent for ``timeout_s``."""
    limit = timeout_s * 1e9
    return not any(
        c.sensor_id not in down and batch_ns - c.last_update_time_ns <= limit for c in track.contributors
    )

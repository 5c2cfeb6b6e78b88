"""Events of the launcher interface (docs/icd/launcher.md §4), in SI units.

Frozen dataclasses validated on construction: a value the ICD cannot carry
raises :class:`LocalProtocolError` naming the field and value. A cue carries
a system track's state, its uncertainty summary and a validity window: nothing
in it (or anywhere in this interface) describes a weapon or its performance.

``sequence`` is ``None`` on a cue or cancel not yet sent (the driver assigns
it); ``mac`` is empty until the codec signs it. ``signed_bytes`` is set on
received cues and cancels: the canonical bytes exactly as they came off the
wire, which is what a receiver verifies the MAC over (ICD §7).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from drivers.base import I64_MAX, U16_MAX, U32_MAX
from hilgw.errors import LocalProtocolError

__all__ = [
    "Ack",
    "AckResult",
    "Cue",
    "CueCancel",
    "LauncherEvent",
    "LauncherState",
    "LauncherStatus",
    "NackReason",
    "covariance_summary",
]

MAC_SIZE = 32  # HMAC-SHA256 tag of a cue or cancel, never truncated (ICD §7)
REPLY_MAC_SIZE = 16  # HMAC-SHA256 tag of an ack or heartbeat, truncated to 128 bits (ICD §7.5)


class AckResult(enum.IntEnum):
    """LAUNCHER_ACK ``Result`` (ICD §5.4)."""

    ACK = 1
    NACK = 2


class NackReason(enum.IntEnum):
    """Reason codes of a nack (ICD §6). ``NONE`` goes with an ACK."""

    NONE = 0
    STALE = 1  # launcher's clock outside [valid_from, valid_until]
    REPLAY = 2  # sequence not above the highest accepted
    BAD_MAC = 3  # tag does not verify (tampered, or wrong key)
    UNKNOWN_KEY = 4  # key id not provisioned on the launcher
    UNSIGNED = 5  # key id 0, or a cue body whose MAC frame never came
    MALFORMED = 6  # fields break the ICD (e.g. a value out of range)
    NOT_READY = 7  # launcher state is not READY
    UNKNOWN_CUE = 8  # cancel of a cue the launcher does not hold
    WRONG_LAUNCHER = 9  # addressed to another launcher id
    BAD_WINDOW = 10  # valid_until <= valid_from, or window longer than allowed


class LauncherState(enum.IntEnum):
    """LAUNCHER_STATUS ``State`` (ICD §5.5)."""

    READY = 0
    NOT_READY = 1
    FAULT = 2


def _bad(cls: str, name: str, value: object, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"{cls}.{name} = {value!r} {why}", reason="range", field=name, value=value)


def _int(cls: str, name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _bad(cls, name, value, "is not an integer")
    if not lo <= int(value) <= hi:
        raise _bad(cls, name, value, f"outside [{lo}, {hi}]")


def _finite(cls: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise _bad(cls, name, value, "is not a number")
    if not math.isfinite(float(value)):
        raise _bad(cls, name, value, "is not finite")


def covariance_summary(cov: npt.ArrayLike) -> tuple[float, float, float, float]:
    """(pos σ max, pos σ min, vel σ max, vel σ min) of a 6×6 ECEF covariance (ICD §5.1).

    The square roots of the largest and smallest eigenvalues of the position
    and velocity 3×3 blocks: the semi-axes of the 1-σ ellipsoids.
    """
    p = np.asarray(cov, dtype=np.float64).reshape(6, 6)
    p = 0.5 * (p + p.T)
    pos = np.linalg.eigvalsh(p[:3, :3])
    vel = np.linalg.eigvalsh(p[3:, 3:])
    clip = np.maximum  # tiny negative eigenvalues from round-off are 0
    return (
        float(np.sqrt(clip(pos[-1], 0.0))),
        float(np.sqrt(clip(pos[0], 0.0))),
        float(np.sqrt(clip(vel[-1], 0.0))),
        float(np.sqrt(clip(vel[0], 0.0))),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Cue:
    """An engagement cue (ICD §5.1): system track state and validity window.

    Positions ECEF m, velocities ECEF m/s, times UTC ns. On the wire the
    window is kept in whole ms relative to ``time_of_validity_ns``, rounded
    inwards (``valid_from`` up, ``valid_until`` down) so quantisation never
    widens it.
    """

    launcher_id: int
    key_id: int
    cue_id: int
    system_track_id: int
    time_of_validity_ns: int
    valid_from_ns: int
    valid_until_ns: int
    position_m: tuple[float, float, float]
    velocity_mps: tuple[float, float, float]
    pos_sigma_max_m: float
    pos_sigma_min_m: float
    vel_sigma_max_mps: float
    vel_sigma_min_mps: float
    sequence: int | None = None
    mac: bytes = b""
    signed_bytes: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        c = "Cue"
        _int(c, "launcher_id", self.launcher_id, 0, U16_MAX)
        _int(c, "key_id", self.key_id, 0, U16_MAX)
        _int(c, "cue_id", self.cue_id, 0, U32_MAX)
        _int(c, "system_track_id", self.system_track_id, 0, U32_MAX)
        _int(c, "time_of_validity_ns", self.time_of_validity_ns, 0, I64_MAX)
        _int(c, "valid_from_ns", self.valid_from_ns, 0, I64_MAX)
        _int(c, "valid_until_ns", self.valid_until_ns, 0, I64_MAX)
        if self.sequence is not None:
            _int(c, "sequence", self.sequence, 1, U32_MAX)
        for name in ("position_m", "velocity_mps"):
            vec = getattr(self, name)
            if len(vec) != 3:
                raise _bad(c, name, vec, "is not 3 values")
            for v in vec:
                _finite(c, name, v)
            object.__setattr__(self, name, tuple(float(v) for v in vec))
        for name in ("pos_sigma_max_m", "pos_sigma_min_m", "vel_sigma_max_mps", "vel_sigma_min_mps"):
            v = getattr(self, name)
            _finite(c, name, v)
            if v < 0:
                raise _bad(c, name, v, "is negative")
        if self.mac and len(self.mac) != MAC_SIZE:
            raise _bad(c, "mac", self.mac, f"is not {MAC_SIZE} bytes")

    @classmethod
    def from_state(
        cls,
        *,
        state: npt.ArrayLike,
        covariance: npt.ArrayLike,
        **kw: int,
    ) -> Cue:
        """Build a cue from an ECEF state (x, y, z, vx, vy, vz) and its 6×6 covariance."""
        s = np.asarray(state, dtype=np.float64).reshape(6)
        pmax, pmin, vmax, vmin = covariance_summary(covariance)
        return cls(
            position_m=(float(s[0]), float(s[1]), float(s[2])),
            velocity_mps=(float(s[3]), float(s[4]), float(s[5])),
            pos_sigma_max_m=pmax,
            pos_sigma_min_m=pmin,
            vel_sigma_max_mps=vmax,
            vel_sigma_min_mps=vmin,
            **kw,  # type: ignore[arg-type]  # the int fields, checked in __post_init__
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CueCancel:
    """Withdraw a cue the launcher holds (ICD §5.3). ``reason`` is free for the sender (0..255)."""

    launcher_id: int
    key_id: int
    cue_id: int
    issue_time_ns: int
    reason: int = 0
    sequence: int | None = None
    mac: bytes = b""
    signed_bytes: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        c = "CueCancel"
        _int(c, "launcher_id", self.launcher_id, 0, U16_MAX)
        _int(c, "key_id", self.key_id, 0, U16_MAX)
        _int(c, "cue_id", self.cue_id, 0, U32_MAX)
        _int(c, "issue_time_ns", self.issue_time_ns, 0, I64_MAX)
        _int(c, "reason", self.reason, 0, 255)
        if self.sequence is not None:
            _int(c, "sequence", self.sequence, 1, U32_MAX)
        if self.mac and len(self.mac) != MAC_SIZE:
            raise _bad(c, "mac", self.mac, f"is not {MAC_SIZE} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """The launcher's answer to the cue or cancel with sequence ``cue_sequence`` (ICD §5.4).

    ``ack_sequence`` is the freshness counter and ``key_id``/``mac`` the
    truncated tag of ICD v2 (§7.5), filled in by the sending codec; a received
    ack has been verified by the receiving codec. ``icd_version`` 1: an
    unauthenticated v1 ack (only where a config accepts v1 launchers).
    """

    launcher_id: int
    result: AckResult
    reason: NackReason
    cue_sequence: int
    cue_id: int
    ack_sequence: int
    launcher_time_ns: int
    key_id: int = 0
    mac: bytes = b""
    icd_version: int = 2

    def __post_init__(self) -> None:
        c = "Ack"
        _reply_auth(c, self.key_id, self.mac, self.icd_version)
        _int(c, "launcher_id", self.launcher_id, 0, U16_MAX)
        object.__setattr__(self, "result", _enum(c, "result", AckResult, self.result))
        object.__setattr__(self, "reason", _enum(c, "reason", NackReason, self.reason))
        if (self.result is AckResult.ACK) != (self.reason is NackReason.NONE):
            raise _bad(c, "reason", self.reason, f"does not go with {self.result.name}")
        _int(c, "cue_sequence", self.cue_sequence, 0, U32_MAX)
        _int(c, "cue_id", self.cue_id, 0, U32_MAX)
        _int(c, "ack_sequence", self.ack_sequence, 0, U32_MAX)
        _int(c, "launcher_time_ns", self.launcher_time_ns, 0, I64_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class LauncherStatus:
    """Launcher heartbeat (ICD §5.5): state, clock and the highest accepted sequence.

    ``sequence`` (HeartbeatSequence), ``key_id`` and ``mac`` as for :class:`Ack`.
    """

    launcher_id: int
    state: LauncherState
    sequence: int
    launcher_time_ns: int
    last_accepted_sequence: int = 0
    fault_code: int = 0
    time_locked: bool = True
    key_id: int = 0
    mac: bytes = b""
    icd_version: int = 2

    def __post_init__(self) -> None:
        c = "LauncherStatus"
        _reply_auth(c, self.key_id, self.mac, self.icd_version)
        _int(c, "launcher_id", self.launcher_id, 0, U16_MAX)
        object.__setattr__(self, "state", _enum(c, "state", LauncherState, self.state))
        _int(c, "sequence", self.sequence, 0, U32_MAX)
        _int(c, "launcher_time_ns", self.launcher_time_ns, 0, I64_MAX)
        _int(c, "last_accepted_sequence", self.last_accepted_sequence, 0, U32_MAX)
        _int(c, "fault_code", self.fault_code, 0, U16_MAX)
        if not isinstance(self.time_locked, bool):
            raise _bad(c, "time_locked", self.time_locked, "is not a bool")


def _reply_auth(cls: str, key_id: int, mac: bytes, version: int) -> None:
    _int(cls, "key_id", key_id, 0, U16_MAX)
    if mac and len(mac) != REPLY_MAC_SIZE:
        raise _bad(cls, "mac", mac, f"is not {REPLY_MAC_SIZE} bytes")
    if version not in (1, 2):
        raise _bad(cls, "icd_version", version, "is not 1 or 2")


def _enum(cls: str, name: str, kind: type[enum.IntEnum], value: object) -> enum.IntEnum:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(cls, name, value, f"is not a {kind.__name__}")
    try:
        return kind(value)
    except ValueError:
        raise _bad(cls, name, value, f"is not a {kind.__name__}") from None


#: Every event of the interface.
LauncherEvent = Cue | CueCancel | Ack | LauncherStatus

"""Cues a previous run left live at a launcher, read back from the audit log (issue 23 §2).

A gateway that dies (SIGKILL, power, a crash) starts again in HOLD, but the
cues it had sent stay valid at their launchers until ``valid_until``. From the
journal we know each cue that was sent (``cue_sent`` / ``cue_resent``: launcher,
track, ``valid_until_ns``) and whether it ended with its cancel answered. Every
sent cue still inside its validity window whose end was not confirmed by the
launcher (no end record, or a ``cancel_sent`` without ``cancel_acked``) is
*possibly live*: the restarted core cancels it (journal first, as always).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Orphan", "RecoveryScan"]

#: Records that end a cue without a launcher-side cancel being needed
#: (the launcher said no, or never had it live).
_ENDED_QUIETLY = {"nacked", "failed", "rejected"}


@dataclass(frozen=True, slots=True)
class Orphan:
    """A cue possibly still live at its launcher after a restart."""

    cue_id: int
    launcher_id: str
    track_id: int
    valid_until_ns: int


class RecoveryScan:
    """Feed it every history record (:meth:`add`), then ask :meth:`orphans`."""

    def __init__(self) -> None:
        self._sent: dict[int, Orphan] = {}
        self._open_cancel: set[int] = set()
        self._closed: set[int] = set()

    def add(self, rec: dict[str, Any]) -> None:
        d = rec.get("data")
        if not isinstance(d, dict) or "cue_id" not in d:
            return
        try:
            cue_id = int(d["cue_id"])
        except (TypeError, ValueError):
            return
        kind = rec.get("kind")
        if kind in ("cue_sent", "cue_resent"):
            try:
                self._sent[cue_id] = Orphan(
                    cue_id, str(d["launcher"]), int(d.get("track", 0)), int(d["valid_until_ns"])
                )
            except (KeyError, TypeError, ValueError):
                return
            self._closed.discard(cue_id)
        elif kind in _ENDED_QUIETLY or kind in ("cancel_acked", "cancel_nacked"):
            # A nacked cancel: the launcher has no such live cue either.
            self._closed.add(cue_id)
            self._open_cancel.discard(cue_id)
        elif kind in ("cancel_sent", "restart_cancel"):
            self._open_cancel.add(cue_id)

    def orphans(self, now_wall_ns: int) -> list[Orphan]:
        """Sent, not confirmed ended, and still inside the validity window."""
        return [
            o
            for cue_id, o in sorted(self._sent.items())
            if cue_id not in self._closed and o.valid_until_ns > now_wall_ns
        ]

    def feed(self, history: Iterable[dict[str, Any]]) -> RecoveryScan:
        for rec in history:
            self.add(rec)
        return self

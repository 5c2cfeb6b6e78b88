"""Drop logging that cannot flood: one line per device and reason per interval.

Every drop is counted (``DeviceStats.drop``, DESIGN.md rule 5); the log only
tells an integrator that a kind of drop is happening and shows one example.
A launcher on a shared CAN bus once wrote 17,387 WARNING lines in 135 s for
frames that were simply not its own (issue 14); with :class:`DropLog` that is
one line per reason per minute, the next one saying how many were held back.

Why not ``logging.Filter`` or a library: the key is (device, reason), not the
message text, and the line must carry the count held back since the last one;
that is a dict and a clock read, smaller than any dependency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["DROP_LOG_INTERVAL_S", "DropLog"]

#: At most one line per device and reason in this many seconds.
DROP_LOG_INTERVAL_S = 60.0


class DropLog:
    """Log a device's drops at most once per reason per ``interval_s``.

    ``clock`` is monotonic seconds (tests pass a fake one).
    """

    __slots__ = ("_clock", "_held", "_interval", "_last", "_level", "_logger", "device")

    def __init__(
        self,
        logger: logging.Logger,
        device: str,
        *,
        level: int = logging.WARNING,
        interval_s: float = DROP_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self.device = device
        self._level = level
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def drop(self, reason: str, error: object) -> bool:
        """Note one drop; log it if this reason was not logged in the last interval.

        Returns whether a line was written.
        """
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._held[reason] = self._held.get(reason, 0) + 1
            return False
        self._last[reason] = now
        held = self._held.pop(reason, 0)
        if held:
            self._logger.log(
                self._level,
                "%s: %s (and %d more %r drops in the last %.0f s; all counted)",
                self.device,
                error,
                held,
                reason,
                now - last if last is not None else 0.0,
            )
        else:
            self._logger.log(self._level, "%s: %s", self.device, error)
        return True

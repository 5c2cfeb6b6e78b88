"""Restart accounting for the supervisor's long-running tasks (issue 15).

A task that fails is restarted (``Gateway._keep_running``) and each restart is
counted here: per task in total (``hilgw_task_restarts_total{task}`` on
/metrics) and in a sliding window. A task restarted ``max_restarts`` times or
more within ``restart_window_s`` is *crash-looping*: /healthz answers 503 and
the systemd watchdog pings stop (docs/operations.md), so a gateway that only
looks alive is never reported healthy. Once the restarts fall out of the
window (the task has stayed up) it is healthy again.

Pure bookkeeping: no clock of its own (callers pass monotonic seconds).
"""

from __future__ import annotations

from collections import Counter, deque

from gateway.config import SupervisorConfig

__all__ = ["TaskHealth"]


class TaskHealth:
    """Restart counts per task and the crash-loop verdict."""

    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        #: Restarts since start, by task name.
        self.restarts: Counter[str] = Counter()
        #: The reason of each task's last failure.
        self.last_error: dict[str, str] = {}
        #: The back-off chosen after each of the last restarts, by task (seconds).
        self.delays: dict[str, deque[float]] = {}
        self._recent: dict[str, deque[float]] = {}

    def restarted(self, task: str, reason: str, now_mono: float, delay_s: float = 0.0) -> None:
        """``task`` ended (``reason``) at ``now_mono``; it restarts after ``delay_s``."""
        self.restarts[task] += 1
        self.last_error[task] = reason
        self.delays.setdefault(task, deque(maxlen=32)).append(delay_s)
        self._recent.setdefault(task, deque()).append(now_mono)
        self._expire(task, now_mono)

    def _expire(self, task: str, now_mono: float) -> None:
        recent = self._recent.get(task)
        while recent and now_mono - recent[0] > self.config.restart_window_s:
            recent.popleft()

    def recent(self, task: str, now_mono: float) -> int:
        """Restarts of ``task`` within the window ending now."""
        self._expire(task, now_mono)
        return len(self._recent.get(task, ()))

    def crash_looping(self, now_mono: float) -> list[str]:
        """Tasks restarted ``max_restarts`` times or more within the window, sorted."""
        limit = self.config.max_restarts
        return sorted(t for t in self._recent if self.recent(t, now_mono) >= limit)

    def problem(self, now_mono: float) -> str | None:
        """None when no task crash-loops, else a one-line reason (for /healthz and STATUS=)."""
        looping = self.crash_looping(now_mono)
        if not looping:
            return None
        w = self.config.restart_window_s
        parts = [
            f"{t} restarted {self.recent(t, now_mono)}x in {w:g} s ({self.last_error.get(t, '')})"
            for t in looping
        ]
        return "crash loop: " + "; ".join(parts)

"""How tests wait: on a condition or a ready line, never on a fixed sleep.

* :func:`eventually` (and :func:`eventually_sync` for threads and plain
  tests) polls a condition until it holds, and fails naming what was awaited
  and for how long. The budget is a bound, not a figure: it is generous
  because CI runs on 2 slow, busy cores, and a condition that holds returns
  at once, so a large budget costs nothing on the way to a pass.
* :func:`wait_ready` reads an emulator child's stdout (an asyncio
  subprocess) up to its JSON ``{"event": "ready", ...}`` line, the readiness
  signal every process in sim_devices/ and ``hilgw emulate`` prints, and
  fails quoting the child's stderr when it exits first or stays silent.
* :func:`with_lead` for scenario tests whose emulators take the scenario's
  t = 0 (``--epoch-ns``) on their command line, before anything is up: the
  run calls :func:`up_before` once its rig is ready; a rig that came up after
  t = 0 saw none of the first events, so that run is void and is made again
  with a lead grown by the start-up it measured (a fixed lead is a guess that
  a loaded machine beats).

Polling rather than an event on purpose: most conditions read state another
task, thread or process changes (counters, files, a peer's output), which
offers no event to await.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

__all__ = [
    "READY_S",
    "WAIT_S",
    "LateStart",
    "eventually",
    "eventually_sync",
    "up_before",
    "wait_ready",
    "with_lead",
]

#: Default budget for a condition (s): a bound for a slow CI machine, not an expectation.
WAIT_S = 20.0
#: Default budget for a child process's ready line (s): a Python interpreter
#: importing numpy/scipy, and libasterix's generated tables (~7 s alone on a
#: loaded 2-core machine), before it prints anything.
READY_S = 60.0
#: The longest lead :func:`with_lead` grows to (s).
MAX_LEAD_S = 60.0

T = TypeVar("T")


def _describe(pred: Callable[[], object], what: str | None) -> str:
    if what:
        return what
    try:  # a lambda's own text reads better than "condition"
        return inspect.getsource(pred).strip()
    except (OSError, TypeError):
        return getattr(pred, "__qualname__", repr(pred))


async def eventually(
    pred: Callable[[], object],
    timeout_s: float = WAIT_S,
    what: str | None = None,
    *,
    interval_s: float = 0.02,
    task: asyncio.Task[Any] | None = None,
) -> None:
    """Return once ``pred()`` is true; fail after ``timeout_s`` naming ``what`` was awaited.

    ``task``: a background task the condition depends on; if it ends first,
    its exception is raised here (or the test fails saying it ended), rather
    than a timeout long after the real cause.
    """
    deadline = time.monotonic() + timeout_s
    while not pred():
        if task is not None and task.done():
            task.result()
            pytest.fail(f"task {task.get_name()} ended while waiting for: {_describe(pred, what)}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for: {_describe(pred, what)}")
        await asyncio.sleep(interval_s)


def eventually_sync(
    pred: Callable[[], object],
    timeout_s: float = WAIT_S,
    what: str | None = None,
    *,
    interval_s: float = 0.02,
) -> None:
    """:func:`eventually` for code with no event loop (threads, plain tests)."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for: {_describe(pred, what)}")
        time.sleep(interval_s)


async def wait_ready(
    proc: asyncio.subprocess.Process, timeout_s: float = READY_S, what: str = "emulator"
) -> list[dict[str, Any]]:
    """Read ``proc``'s stdout JSON lines up to and including its ready line; return them all.

    ``hilgw emulate`` prints a ``device`` line per child before its own
    ready line; a single emulator prints just the ready line. Fails, quoting
    stderr when it was piped, if the process exits or prints something that
    is not JSON first, or if no ready line comes within ``timeout_s``.
    """
    assert proc.stdout is not None, "wait_ready needs stdout=asyncio.subprocess.PIPE"
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not lines or lines[-1].get("event") != "ready":
                raw = await proc.stdout.readline()
                if not raw:
                    code = await proc.wait()
                    tail = await _stderr(proc)
                    pytest.fail(f"{what} (pid {proc.pid}) exited with {code} before ready{tail}")
                try:
                    obj = json.loads(raw)
                except ValueError:
                    pytest.fail(f"{what} (pid {proc.pid}) printed {raw[:200]!r}, not a JSON line")
                if isinstance(obj, dict):
                    lines.append(obj)
    except TimeoutError:
        pytest.fail(f"{what} (pid {proc.pid}) printed no ready line within {timeout_s:g} s; got {lines}")
    return lines


async def _stderr(proc: asyncio.subprocess.Process) -> str:
    if proc.stderr is None:
        return ""
    try:  # bounded: a grandchild may hold the pipe open
        tail = (await asyncio.wait_for(proc.stderr.read(), 5.0))[-2000:].decode(errors="replace").strip()
    except TimeoutError:
        return "; stderr still open"
    return f"; stderr: {tail}" if tail else ""


class LateStart(Exception):
    """The rig was up only after scenario t = 0: the run observed nothing it was meant to."""

    def __init__(self, late_s: float, what: str) -> None:
        super().__init__(f"{what} up {late_s:.2f} s after scenario t = 0")
        self.late_s = late_s


def up_before(epoch_ns: int, what: str = "the rig", margin_s: float = 0.0) -> None:
    """Raise :class:`LateStart` unless it is still ``margin_s`` before scenario t = 0."""
    late_s = (time.time_ns() - epoch_ns) / 1e9 + margin_s
    if late_s > 0:
        raise LateStart(late_s, what)


async def with_lead(run: Callable[[int], Awaitable[T]], lead_s: float, *, tries: int = 3) -> T:
    """``await run(epoch_ns)`` with scenario t = 0 ``lead_s`` from now.

    ``run`` calls :func:`up_before` once everything it starts is ready, and
    cleans up on the way out. On :class:`LateStart` it is run again with the
    lead grown by twice the lateness (at most :data:`MAX_LEAD_S`); after
    ``tries`` late starts the test fails saying so.
    """
    late: list[str] = []
    for _ in range(tries):
        try:
            return await run(time.time_ns() + round(lead_s * 1e9))
        except LateStart as exc:
            late.append(f"lead {lead_s:.1f} s: {exc}")
            lead_s = min(MAX_LEAD_S, lead_s + 2.0 * exc.late_s + 1.0)
    pytest.fail("never up before scenario t = 0: " + "; ".join(late))

"""A cancel that a library call swallowed is raised again (gateway.outputs.mqtt.raise_if_cancelling).

On Python 3.11 ``asyncio.wait_for`` (used inside aiomqtt) returns normally
when a cancel arrives as the awaited thing completes; a loop in the task
would then run for ever and the TaskGroup waiting for it would never end.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.outputs.mqtt import raise_if_cancelling


async def _swallows_then_loops(checked: bool, rounds: list[int]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)  # the cancel lands here and is swallowed, as wait_for may
    for _ in range(50):
        rounds.append(1)
        if checked:
            raise_if_cancelling()
        await asyncio.sleep(0.001)


async def test_a_swallowed_cancel_is_raised_again() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_swallows_then_loops(True, rounds))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert rounds == [1]  # stopped at the first check


async def test_without_the_check_the_loop_runs_on() -> None:
    # The behaviour the check exists for: the task outlives its cancel.
    rounds: list[int] = []
    task = asyncio.create_task(_swallows_then_loops(False, rounds))
    await asyncio.sleep(0.01)
    task.cancel()
    await task
    assert not task.cancelled()
    assert len(rounds) == 50


async def test_no_cancel_no_raise() -> None:
    raise_if_cancelling()  # a task with no pending cancel goes on
    assert asyncio.current_task() is not None

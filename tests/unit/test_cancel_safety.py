"""A cancel of the caller always raises through gateway.outputs.mqtt.cancel_safe,
even when the awaited call swallows it, as ``asyncio.wait_for`` inside aiomqtt
may on Python 3.11 (CPython gh-86296)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.outputs.mqtt import cancel_safe


async def _swallowing_call(done: list[str]) -> str:
    """Like wait_for hit by a cancel as its result arrives: it returns normally."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)
    done.append("returned")
    return "answer"


async def _pump(safe: bool, rounds: list[int], done: list[str], limit: int = 50) -> None:
    while len(rounds) < limit:
        rounds.append(1)
        call = _swallowing_call(done)
        await (cancel_safe(call) if safe else call)


async def test_a_swallowed_cancel_still_stops_the_caller() -> None:
    rounds: list[int] = []
    done: list[str] = []
    task = asyncio.create_task(_pump(True, rounds, done))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rounds == [1]
    await asyncio.sleep(0)  # the inner call was cancelled too (and swallowed it)
    assert done == ["returned"]


async def test_without_it_the_loop_runs_on() -> None:
    # What cancel_safe exists for: the cancel is lost and the loop goes on.
    rounds: list[int] = []
    done: list[str] = []
    task = asyncio.create_task(_pump(False, rounds, done, limit=2))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()
    assert rounds == [1, 1]  # the first call swallowed the cancel; the loop went on
    task.cancel()  # the second swallows it too, then the loop's limit ends it
    async with asyncio.timeout(2):
        await task
    assert not task.cancelled()
    assert done == ["returned", "returned"]


async def test_results_and_errors_pass_through() -> None:
    async def ok() -> int:
        return 42

    async def bad() -> None:
        raise ValueError("broken")

    assert await cancel_safe(ok()) == 42
    with pytest.raises(ValueError, match="broken"):
        await cancel_safe(bad())

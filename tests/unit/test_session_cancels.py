"""MqttSession's guards against lost cancellations (gateway/outputs/session.py).

``_settle_cancels``: a cancel requested but never raised (Python 3.11's
``asyncio.wait_for`` swallows one that comes with the result, gh-86296) is
raised again. ``_until_one_fails``: the connection's tasks run until one
fails; the others are cancelled, its error is raised (a shed before any
other), and the running task is never cancelled by anyone but its caller, so
a cancel that arrives as a child fails is raised, not mistaken for a task
group's own and undone (a stopped session that connected again for ever).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from gateway.outputs.session import FloodShed, _settle_cancels, _until_one_fails


async def _in_task(cancels: int) -> tuple[str, int]:
    async def body() -> tuple[str, int]:
        me = asyncio.current_task()
        assert me is not None
        for _ in range(cancels):
            me.cancel()
            # delivered and swallowed, as asyncio.wait_for does on 3.11 (gh-86296)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
        try:
            _settle_cancels(0)
        except asyncio.CancelledError:
            left = me.cancelling()
            while me.uncancel():  # let the test's task finish normally
                pass
            return "raised", left
        left = me.cancelling()
        while me.uncancel():
            pass
        return "ran on", left

    return await asyncio.create_task(body())


@pytest.mark.parametrize(
    ("cancels", "expected"),
    [(0, ("ran on", 0)), (1, ("raised", 1)), (2, ("raised", 2))],
)
async def test_settle_cancels(cancels: int, expected: tuple[str, int]) -> None:
    assert await _in_task(cancels) == expected


async def _forever(log: list[str], name: str) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        log.append(name)
        raise


async def _fail(exc: BaseException, after_s: float = 0.0) -> None:
    await asyncio.sleep(after_s)
    raise exc


async def test_a_failing_task_ends_the_others_and_its_error_is_raised() -> None:
    log: list[str] = []
    me = asyncio.current_task()
    assert me is not None
    with pytest.raises(aiomqtt.MqttError, match="lost"):
        await _until_one_fails((_forever(log, "pump"), "pump"), (_fail(aiomqtt.MqttError("lost")), "receive"))
    assert log == ["pump"]
    assert me.cancelling() == 0  # nothing was requested of the caller's task


async def test_a_shed_is_raised_before_another_error() -> None:
    with pytest.raises(FloodShed):
        await _until_one_fails(
            (_fail(aiomqtt.MqttError("lost")), "a"),
            (_fail(FloodShed("flood")), "b"),
            (_fail(ValueError()), "c"),
        )


async def test_a_cancel_that_comes_as_a_task_fails_is_raised() -> None:
    # The session task is cancelled in the same loop turn in which its
    # receive task fails with a shed: the cancel must come out, every time.
    for delay in (0.0, 0.001, 0.01):
        log: list[str] = []
        outer = asyncio.create_task(
            _until_one_fails((_forever(log, "pump"), "pump"), (_fail(FloodShed("flood"), delay), "receive"))
        )
        await asyncio.sleep(delay)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert outer.cancelled()
        assert log == ["pump"]


async def test_a_cancel_while_the_tasks_run_cancels_them_all() -> None:
    log: list[str] = []
    outer = asyncio.create_task(_until_one_fails((_forever(log, "a"), "a"), (_forever(log, "b"), "b")))
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert sorted(log) == ["a", "b"]

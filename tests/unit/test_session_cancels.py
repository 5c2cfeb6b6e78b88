"""MqttSession's guard against cancellations that Python 3.11 swallows
(gateway/outputs/session.py ``_settle_cancels``): a cancel requested but never
raised is raised again; the one request a failed TaskGroup leaves behind is
undone, a second one (a real cancel) is raised."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.outputs.session import _settle_cancels


async def _in_task(cancels: int, after_group: bool) -> tuple[str, int]:
    async def body() -> tuple[str, int]:
        me = asyncio.current_task()
        assert me is not None
        for _ in range(cancels):
            me.cancel()
            # delivered and swallowed, as asyncio.wait_for does on 3.11 (gh-86296)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
        try:
            _settle_cancels(0, after_group=after_group)
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
    ("cancels", "after_group", "expected"),
    [
        (0, False, ("ran on", 0)),
        (1, False, ("raised", 1)),  # swallowed by wait_for: raised again
        (0, True, ("ran on", 0)),
        (1, True, ("ran on", 0)),  # the TaskGroup's own request: undone
        (2, True, ("raised", 2)),  # the group's and a real one: raised
    ],
)
async def test_settle_cancels(cancels: int, after_group: bool, expected: tuple[str, int]) -> None:
    assert await _in_task(cancels, after_group) == expected

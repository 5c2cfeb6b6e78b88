"""The test harness's waits (tests/waiting.py): they return on the condition and
fail saying what was awaited, quoting a child's stderr when it died first."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from tests.waiting import LateStart, eventually, eventually_sync, up_before, wait_ready, with_lead


async def test_eventually_returns_once_the_condition_holds() -> None:
    t0 = time.monotonic()
    await eventually(lambda: time.monotonic() - t0 > 0.05, 5.0, what="50 ms")
    assert time.monotonic() - t0 < 5.0


async def test_eventually_names_what_it_waited_for() -> None:
    with pytest.raises(
        pytest.fail.Exception, match=r"timed out after 0.05 s waiting for: the broker's SUBACK"
    ):
        await eventually(lambda: False, 0.05, what="the broker's SUBACK")
    # No name given: the condition's own text.
    with pytest.raises(pytest.fail.Exception, match=r"waiting for: .*1 == 2"):
        await eventually(lambda: 1 == 2, 0.05)


async def test_eventually_raises_the_error_of_the_task_it_depends_on() -> None:
    async def dies() -> None:
        raise RuntimeError("serve() failed")

    task = asyncio.create_task(dies())
    with pytest.raises(RuntimeError, match=r"serve\(\) failed"):
        await eventually(lambda: False, 10.0, what="never", task=task)
    done = asyncio.create_task(asyncio.sleep(0))
    with pytest.raises(pytest.fail.Exception, match="ended while waiting for: never"):
        await eventually(lambda: False, 10.0, what="never", task=done)


def test_eventually_sync() -> None:
    box = [0]

    def tick() -> bool:
        box[0] += 1
        return box[0] >= 3

    eventually_sync(tick, 5.0, interval_s=0.001)
    assert box[0] == 3
    with pytest.raises(pytest.fail.Exception, match="waiting for: nothing"):
        eventually_sync(lambda: False, 0.02, "nothing")


async def test_with_lead_runs_again_with_a_longer_lead_after_a_late_start() -> None:
    leads: list[float] = []

    async def run(epoch_ns: int) -> str:
        leads.append((epoch_ns - time.time_ns()) / 1e9)
        if len(leads) == 1:
            raise LateStart(0.5, "the rig")  # came up 0.5 s after t = 0
        up_before(epoch_ns, "the rig")
        return "ran"

    assert await with_lead(run, 0.1) == "ran"
    assert len(leads) == 2
    assert leads[1] > 0.1 + 2 * 0.5  # grown by twice the lateness
    with pytest.raises(LateStart, match=r"the rig up .* after scenario t = 0"):
        up_before(time.time_ns() - 10**9, "the rig")


async def test_with_lead_fails_after_its_tries() -> None:
    async def always_late(_epoch_ns: int) -> None:
        raise LateStart(0.01, "the rig")

    with pytest.raises(pytest.fail.Exception, match="never up before scenario t = 0"):
        await with_lead(always_late, 0.0, tries=2)


async def _child(code: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def test_wait_ready_reads_up_to_the_ready_line() -> None:
    proc = await _child(
        "import json, time\n"
        "print(json.dumps({'event': 'device', 'device': 'radar'}), flush=True)\n"
        "print(json.dumps({'event': 'ready', 'pid': 1}), flush=True)\n"
        "print('after', flush=True)\n"
    )
    lines = await wait_ready(proc, 30.0)
    assert [ln["event"] for ln in lines] == ["device", "ready"]
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"after\n"  # the rest is left to the caller
    await proc.wait()


async def test_wait_ready_quotes_stderr_of_a_child_that_died() -> None:
    proc = await _child("import sys; sys.stderr.write('no sensor nope'); sys.exit(2)")
    with pytest.raises(
        pytest.fail.Exception, match=r"radar emulator .* exited with 2 before ready; stderr: no sensor"
    ):
        await wait_ready(proc, 30.0, what="radar emulator")


async def test_wait_ready_gives_up_on_a_silent_child() -> None:
    proc = await _child("import time; time.sleep(30)")
    try:
        with pytest.raises(pytest.fail.Exception, match=r"printed no ready line within 0\.2 s"):
            await wait_ready(proc, 0.2)
    finally:
        proc.kill()
        await proc.wait()

"""The fault suite's short version (benchmarks/faults, ``--quick``): one or two
repetitions of each experiment, so that a regression fails CI. The full run
and its figures: benchmarks/faults/RESULTS.md."""

from __future__ import annotations

import pytest

from benchmarks.faults.__main__ import EXPERIMENTS

pytestmark = pytest.mark.e2e


async def test_broker_sigkill_under_load_loses_nothing_the_session_holds() -> None:
    res = await EXPERIMENTS["broker_restart"][1]()
    assert res["failed_reconnects"] == 0
    assert res["drained"]
    # What the broker had acknowledged dies with it (no persistence): that is
    # the broker's loss. Everything not acknowledged was sent again.
    assert res["gaps_never_acked"] == 0, res
    assert res["session_drops_counted"] == 0, res


async def test_cue_path_under_broker_restarts_follows_the_policy() -> None:
    res = await EXPERIMENTS["cue_broker"][1]()
    assert res["violations"] == []
    assert res["audit_verifies"]
    assert res["task_deaths"] == 0


async def test_cue_path_process_sigkill_restarts_in_hold_with_a_verified_audit() -> None:
    res = await EXPERIMENTS["gateway_kill"][1]()
    assert res["problems"] == []
    assert res["hold_at_start"] == res["reps"]
    assert res["cues_reemitted"] == 0
    assert res["cues_accepted"] > 0  # cues did flow between the kills


async def test_stalled_broker_drops_only_bulk_and_counts_it() -> None:
    res = await EXPERIMENTS["slow_consumer"][1]()
    assert res["critical_dropped"] == 0
    assert res["critical_received"] == res["critical_sent"]
    assert res["drops_by_reason"]  # the stall did fill the bulk lane ...
    assert res["bulk_not_sent_by_session"] == sum(res["drops_by_reason"].values())  # ... all counted


async def test_serial_unplug_goes_down_and_comes_back_without_leaking() -> None:
    res = await EXPERIMENTS["serial_unplug"][1]()
    assert res["missed"] == 0, res
    assert res["tasks_threads_fds_before"] == res["tasks_threads_fds_after"]


async def test_can_bus_off_is_reported_and_recovered_without_a_hung_reader() -> None:
    res = await EXPERIMENTS["can_bus_off"][1]()
    assert res["problems"] == []
    assert res["recovered"] == res["reps"] - 1
    assert res["reader_threads_left"] == 0


async def test_clock_step_gives_no_negative_duration_and_no_stale_cue_taken_for_live() -> None:
    res = await EXPERIMENTS["clock_step"][1]()
    assert res["negative_durations"] == 0
    assert res["bad_windows"] == 0
    assert res["refused_but_shown_acked"] == 0
    assert res["cues_accepted"] > 0
    assert res["audit"].startswith("OK")

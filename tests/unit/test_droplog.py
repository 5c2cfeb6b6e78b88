"""DropLog: one log line per device and drop reason per interval, with the count held back."""

from __future__ import annotations

import logging

import pytest

from gateway.devices.droplog import DropLog


def test_one_line_per_reason_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    dl = DropLog(logging.getLogger("t.droplog"), "launcher", interval_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t.droplog"):
        written = [dl.drop("unknown_id", f"id 0x{i:X}") for i in range(1000)]
        assert written == [True] + [False] * 999
        assert dl.drop("direction", "cue echoed")  # another reason has its own minute
        now[0] = 59.9
        assert not dl.drop("unknown_id", "still held")
        now[0] = 60.0
        assert dl.drop("unknown_id", "id 0x7")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "launcher: id 0x0",
        "launcher: cue echoed",
        "launcher: id 0x7 (and 1000 more 'unknown_id' drops in the last 60 s; all counted)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)

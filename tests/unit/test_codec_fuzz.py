"""No foreign exception from any codec, either role (issue 14 item 4): the short run.

The long campaign is ``benchmarks/fuzz_codecs.py`` (>= 1,000,000 inputs per
target); here every target of tests/fuzz_support.py gets a hypothesis run of
mutated wire data, and every CAN target a sweep that sets each byte of each
valid frame to an edge value, since one byte outside an enum (a CAN FD
STATUS State of 53) is the kind of bug random mutation finds only rarely.
An outcome other than an event, a counted drop, or (for encode targets) a
LocalProtocolError fails the test with the exception and the input.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hilgw.can import CanFrame
from tests.fuzz_support import Tally, Target, run_one, targets


@cache
def _targets() -> dict[str, Target]:
    return {t.name: t for t in targets()}


NAMES = [
    "serial_radar/gateway", "serial_radar/device",
    "can_radar/gateway classic", "can_radar/device classic", "can_radar/gateway fd", "can_radar/device fd",
    "asterix/gateway", "asterix/device", "nmea/gateway", "nmea/device", "dis/gateway", "dis/device",
    "launcher_can/gateway", "launcher_serial/gateway", "launcher_can/device", "launcher_serial/device",
    "framing/-",
]  # fmt: skip


def _check(target: Target, inputs: Iterator[object]) -> Tally:
    tally = Tally()
    codec = target.make()
    for inp in inputs:
        exc = run_one(target, codec, inp, tally)
        if exc is not None:
            raise AssertionError(f"{target.name}: foreign {exc!r} on input {inp!r}") from exc
    return tally


def test_every_codec_and_role_is_covered() -> None:
    assert sorted(_targets()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(r=st.randoms(use_true_random=False))
def test_mutated_wire_data_gives_events_or_counted_drops(name: str, r: random.Random) -> None:
    target = _targets()[name]
    _check(target, (target.gen(r) for _ in range(5)))


def _edge_bytes(seeds: list[list[CanFrame]]) -> Iterator[list[CanFrame]]:
    for seq in seeds:
        for k, f in enumerate(seq):
            for i in range(len(f.data)):
                for v in (0x00, 0x35, 0xFF):
                    data = f.data[:i] + bytes([v]) + f.data[i + 1 :]
                    yield [*seq[:k], f._replace(data=data), *seq[k + 1 :]]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("can_radar/gateway", "launcher_can"))])
def test_each_byte_of_each_can_frame_at_an_edge_value(name: str) -> None:
    target = _targets()[name]
    tally = _check(target, _edge_bytes([list(s) for s in target.seeds]))
    assert tally.inputs > 100
    assert any(k.startswith("event:") for k in tally.outcomes)  # valid edits still decode

"""benchmarks/bench_multisource.py's ``--mix``: by default each wire stays below
what it carries (a 921.6 kbaud line ~1,486 reports/s, CAN FD ~5,800 frames/s)
and ASTERIX takes the rest of the asked rate (issue 18)."""

from __future__ import annotations

import pytest

from benchmarks.bench_multisource import DEFAULT_MIX, WIRE_LIMIT, pin_plan, split_rate


def test_the_default_mix_keeps_each_wire_below_its_limit_and_asterix_takes_the_rest() -> None:
    rates = split_rate(50_000, DEFAULT_MIX)
    assert sum(rates.values()) == pytest.approx(50_000)
    assert all(rate <= WIRE_LIMIT[name] for name, rate in rates.items())
    assert rates["asterix"] == pytest.approx(50_000 - rates["serial"] - rates["can"])
    assert 1_300 <= rates["serial"] <= 1_486
    assert 5_000 <= rates["can"] <= 5_800


def test_fixed_rates_above_the_total_are_scaled_down_and_the_rest_gets_none() -> None:
    assert split_rate(3_500, "serial=1000,can=6000,asterix=rest") == {"serial": 500.0, "can": 3000.0}


@pytest.mark.parametrize("mix", ["radar=5", "serial", "serial=rest,can=rest"])
def test_a_bad_mix_is_refused_naming_it(mix: str) -> None:
    with pytest.raises(ValueError, match="--mix"):
        split_rate(1_000, mix)


def test_pin_gives_the_gateway_the_lowest_cpu_and_the_rig_the_rest() -> None:
    assert pin_plan({0, 1}) == (0, {1})
    assert pin_plan({3, 5, 7}) == (3, {5, 7})


def test_pin_is_refused_with_one_cpu_naming_it() -> None:
    with pytest.raises(ValueError, match=r"--pin needs two CPUs or more, this process may use \[2\]"):
        pin_plan({2})

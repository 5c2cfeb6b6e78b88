"""Bad config and scenario files end in one ConfigError line, never a traceback.

The long campaign is benchmarks/fuzz_config.py (5,000 cases); this is its
short hypothesis form, plus every numeric value of the shipped files set to
inf / nan / 1e309 in turn, which must be refused naming that key.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import load_config, parse_config
from hilgw.errors import ConfigError
from hilgw.tomlconfig import parse_toml
from sim_devices.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "deploy" / "examples").glob("*.toml"))
SCENARIOS = sorted((ROOT / "sim_devices" / "scenarios").glob("*.toml"))
FILES = [(load_config, p) for p in CONFIGS] + [(load_scenario, p) for p in SCENARIOS]

NASTY = [
    b"inf",
    b"nan",
    b"-inf",
    b"1e309",
    b"\xff",
    b"\xc3(",
    b"[" * 3000,
    b"a = " + b"{b = " * 2000,
    b"\x00",
]


def _numeric_leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, int | float) and not isinstance(node, bool):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _numeric_leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _numeric_leaves(v, (*path, i))]
    return []


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: float) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@pytest.mark.parametrize("path", CONFIGS + SCENARIOS, ids=lambda p: p.name)
def test_every_float_refuses_non_finite_naming_its_key(path: Path) -> None:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    parse = parse_config if path in CONFIGS else parse_scenario
    leaves = _numeric_leaves(raw)
    assert leaves, "the shipped file has numeric values to test"
    for leaf in leaves:
        for bad in (math.inf, -math.inf, math.nan, 1e300):
            doc = copy.deepcopy(raw)
            _set(doc, leaf, bad)
            with pytest.raises(ConfigError) as info:
                parse(doc, source="f")
            # The message names the last key of the path (a list item by its id).
            name = str(leaf[-1]) if isinstance(leaf[-1], str) else str(leaf[-2])
            assert name in info.value.key, (leaf, bad, str(info.value))


def test_ack_timeout_inf_and_huge_refused() -> None:
    base = {"cue": {"keys_file": "k.toml", "audit_path": "a.log"}}
    for bad in (math.inf, 1e308, 3600.0):
        with pytest.raises(ConfigError, match=r"cue\.ack_timeout_s"):
            parse_config({"cue": {**base["cue"], "ack_timeout_s": bad}})


def test_fusion_params_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"fusion\.params\.q_ncv: inf"):
        parse_config({"fusion": {"params": {"q_ncv": math.inf}}})
    with pytest.raises(ConfigError, match=r"fusion\.params\.confirm_m: 'x': must be int"):
        parse_config({"fusion": {"params": {"confirm_m": "x"}}})


def test_bad_utf8_and_deep_nesting_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"f\.toml: not UTF-8 text \(byte offset 4\)"):
        parse_toml(b"a = \xff", "f.toml")
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_toml(b"a = " + b"[" * 5000, "f.toml")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, len(FILES) - 1),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.one_of(st.sampled_from(NASTY), st.binary(min_size=1, max_size=8))),
        min_size=1,
        max_size=3,
    ),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_mutated_files_never_traceback(
    tmp_path: Path, which: int, edits: list[tuple[float, bytes]], cut: float | None
) -> None:
    loader, src = FILES[which]
    data = bytearray(src.read_bytes())
    for where, token in edits:
        pos = int(where * len(data))
        data[pos:pos] = token
    if cut is not None:
        del data[int(cut * len(data)) :]
    case = tmp_path / src.name
    case.write_bytes(bytes(data))
    message = ""
    try:
        loader(case)
    except ConfigError as exc:  # anything else fails the test with its traceback
        message = str(exc)
    assert "\n" not in message

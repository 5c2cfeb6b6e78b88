"""``hilgw replay`` on damaged and unclosed recordings (issue 23, item 6):
one line naming the file and the byte, exit 2, never a traceback; a part a
crash left open is recovered by ``hilgw replay --recover``. The long
campaign (1,000 cases) is benchmarks/fuzz_recordings.py."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli import main
from gateway.recording_check import check_part
from tests.recording_support import CORRUPTIONS, corrupt, make_recording

REPLAY = ["replay", "--max-speed", "--no-progress"]


@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_recording(tmp_path_factory.mktemp("rec"), scans=30)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Another run's part: its chunks are spliced in."""
    return make_recording(
        tmp_path_factory.mktemp("other"), scans=30, t0=1_900_000_000_000_000_000
    ).read_bytes()


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_a_sound_recording_replays(sound: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*REPLAY, str(sound)]) == 0
    assert "30 steps" in capsys.readouterr().err
    assert check_part(sound).problem() is None


def test_a_part_cut_by_a_crash_says_so_and_is_recovered(
    sound: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = sound.read_bytes()
    part = tmp_path / "killed.mcap"
    part.write_bytes(data[: len(data) * 2 // 3])  # no footer, an open chunk: SIGKILL mid-write
    assert main([*REPLAY, str(part)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"hilgw: recording: {part}: incomplete: the file ends inside the record at byte ")
    assert f"hilgw replay --recover {part}" in err
    assert "config error" not in err

    assert main(["replay", "--recover", str(part)]) == 0
    out = capsys.readouterr().out
    fixed = tmp_path / "killed.recovered.mcap"
    assert f"wrote {fixed} with " in out
    kept = int(re.search(r"with (\d+) messages", out).group(1))  # type: ignore[union-attr]
    assert 0 < kept < check_part(sound).messages
    assert main([*REPLAY, str(fixed)]) == 0
    assert "steps identical to the recording" in capsys.readouterr().err


def test_a_flipped_bit_in_a_chunk_fails_its_crc(
    sound: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(sound.read_bytes())
    _, start, end = [s for s in check_part(sound).spans if s[0] == "Chunk"][2]
    data[(start + end) // 2] ^= 0x10
    part = tmp_path / "flip.mcap"
    part.write_bytes(bytes(data))
    assert main([*REPLAY, str(part)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"{part}: damaged at byte {start}: " in err
    assert "crc" in err.lower() or "Error" in err


def test_chunks_swapped_do_not_match_the_index(
    sound: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = sound.read_bytes()
    part = tmp_path / "swap.mcap"
    part.write_bytes(corrupt(data, "splice_swap", random.Random(3)))
    assert main([*REPLAY, str(part)]) == 2
    assert "the index does not match the data" in _one_line(capsys.readouterr().err)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(CORRUPTIONS), seed=st.integers(0, 2**32 - 1))
def test_random_damage_never_tracebacks(
    sound: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, seed: int
) -> None:
    foreign = (
        make_recording(tmp_path, scans=30, t0=1_900_000_000_000_000_000) if kind == "splice_foreign" else None
    )
    part = tmp_path / f"case-{kind}.mcap"
    part.write_bytes(
        corrupt(sound.read_bytes(), kind, random.Random(seed), foreign.read_bytes() if foreign else b"")
    )
    code = main([*REPLAY, str(part)])  # any exception fails the test with its traceback
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        _one_line(err)

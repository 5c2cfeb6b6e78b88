"""The committed message model must be what scripts/gen_proto.py makes of proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_changed_proto_is_detected(tmp_path: Path) -> None:
    # Run the checker on a copy of the tree whose proto differs from hilgw/v1.
    import shutil

    for d in ("proto", "hilgw", "scripts"):
        shutil.copytree(ROOT / d, tmp_path / d)
    track = tmp_path / "proto" / "hilgw" / "v1" / "track.proto"
    track.write_text(
        track.read_text().replace("uint32 update_count = 9;", "uint32 update_count = 9;\n  bool x = 10;")
    )
    res = subprocess.run(
        [sys.executable, str(tmp_path / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1
    assert "track_pb2" in res.stdout

"""Running a test body inside a private network namespace (``unshare -n``) where
loopback carries multicast, so python-can's ``udp_multicast`` crosses processes
without touching the machine's real interfaces.

The body is ``python -c CODE``; it prints one ``RESULT <json>`` line
(:func:`emit_result`), which :func:`run_in_netns` returns.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Loopback up, multicast on, every multicast group routed to it.
SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def unavailable() -> str | None:
    """Why a namespace with multicast CAN cannot be had here (None: it can)."""
    if sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs Linux with unshare(1) and ip(8)"
    if importlib.util.find_spec("msgpack") is None:  # python-can's udp_multicast needs it
        return "python-can udp_multicast needs msgpack (pip install 'python-can[multicast]')"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        why = probe.stderr.decode().strip() or f"exit {probe.returncode}"
        return f"cannot create a network namespace (unshare -n not permitted here): {why}"
    return None


def emit_result(obj: object) -> None:
    """The body's answer to :func:`run_in_netns`."""
    print("RESULT " + json.dumps(obj), flush=True)


def run_in_netns(code: str, timeout_s: float) -> dict[str, Any]:
    """Run ``python -c code`` in a fresh namespace (skips the test where there is none); its RESULT."""
    why = unavailable()
    if why:
        pytest.skip(why)
    body = f"{SETUP} && exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", body],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert lines, proc.stdout
    res: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return res

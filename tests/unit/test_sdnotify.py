"""sd_notify client against a real AF_UNIX datagram socket standing in for systemd,
and the gateway's READY / WATCHDOG / STOPPING use of it (gateway/console.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import SupervisorConfig, parse_config
from gateway.console import Liveness, run_gateway
from gateway.health import DeviceStats
from gateway.sdnotify import Notifier, watchdog_period_s
from gateway.task_health import TaskHealth
from hilgw.v1 import health_pb2


@pytest.fixture
def fake_systemd() -> Iterator[tuple[socket.socket, str]]:
    # A short directory: AF_UNIX paths are limited to 107 bytes (unix(7)).
    with tempfile.TemporaryDirectory(prefix="sdn") as d:
        path = str(Path(d) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(2.0)
        yield sock, path
        sock.close()


def recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_watchdog_stopping_status_arrive(
    fake_systemd: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = fake_systemd
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.enabled
    assert n.ready("3 devices")
    assert recv(sock) == {"READY": "1", "STATUS": "3 devices"}
    assert n.watchdog()
    assert recv(sock) == {"WATCHDOG": "1"}
    assert n.status("two\nlines")
    assert recv(sock) == {"STATUS": "two lines"}
    assert n.stopping()
    assert recv(sock) == {"STOPPING": "1"}
    n.close()


def test_abstract_namespace_address() -> None:
    name = f"hilgw-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = Notifier("@" + name)
        assert n.address == "\0" + name
        assert n.watchdog()
        assert recv(sock) == {"WATCHDOG": "1"}
        n.close()
    finally:
        sock.close()


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert not n.ready()
    assert n.errors == 0


def test_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone"))
    assert not n.watchdog()
    assert not n.watchdog()
    assert n.errors == 2


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_period(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_period_s(env) == expected


# --- the gateway's use of it (gateway/console.py) ---------------------------------


class FakeGateway:
    """The two things Liveness looks at: the supervisor's tasks and device stats."""

    def __init__(self, states: list[int], tasks: list[asyncio.Task[None]]) -> None:
        self.task_list = tasks
        self.task_health = TaskHealth(SupervisorConfig(max_restarts=3, restart_window_s=60.0))
        self.stats = {
            f"d{i}": DeviceStats(f"d{i}", "serial_radar", "serial", state=s) for i, s in enumerate(states)
        }


async def test_liveness_rules() -> None:
    alive = asyncio.create_task(asyncio.sleep(60))
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    down, up = health_pb2.DEVICE_STATE_DOWN, health_pb2.DEVICE_STATE_UP
    try:
        live = Liveness(all_down_s=10)
        gw = FakeGateway([down, health_pb2.DEVICE_STATE_RESTARTING], [alive])
        assert live.problem(gw, 100.0) is None  # type: ignore[arg-type]  # a fake
        assert live.problem(gw, 109.0) is None  # type: ignore[arg-type]
        assert "all 2 device(s) down" in (live.problem(gw, 111.0) or "")  # type: ignore[arg-type]
        gw.stats["d0"].state = up  # one comes back: healthy, and the clock starts over
        assert live.problem(gw, 112.0) is None  # type: ignore[arg-type]
        gw.stats["d0"].state = down
        assert live.problem(gw, 120.0) is None  # type: ignore[arg-type]
        assert Liveness().problem(FakeGateway([], [alive]), 0.0) is None  # type: ignore[arg-type]
        dead = Liveness().problem(FakeGateway([up], [alive, done]), 0.0)  # type: ignore[arg-type]
        assert dead is not None
        assert done.get_name() in dead
        # A task restarted in a loop is alive but not healthy: no pings while it loops.
        gw = FakeGateway([up], [alive])
        for t in (0.0, 10.0):
            gw.task_health.restarted("fusion", "ValueError: boom", t)
        assert Liveness().problem(gw, 20.0) is None  # type: ignore[arg-type]  # 2 < 3
        gw.task_health.restarted("fusion", "ValueError: boom", 20.0)
        looping = Liveness().problem(gw, 20.0)  # type: ignore[arg-type]
        assert looping is not None
        assert "fusion restarted 3x" in looping
        assert "boom" in looping
        assert Liveness().problem(gw, 61.0) is None  # type: ignore[arg-type]  # first one left the window
    finally:
        alive.cancel()


async def test_run_gateway_says_ready_pings_and_says_stopping(
    fake_systemd: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = fake_systemd
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    config = parse_config({"gateway_id": "wd", "mqtt": {"enabled": False}})
    assert await run_gateway(config, duration_s=0.6, live=False) == 0
    sock.setblocking(False)
    got: list[dict[str, str]] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            got.append(recv(sock))
    assert got[0]["READY"] == "1"
    assert got[-1]["STOPPING"] == "1"
    pings = [m for m in got if m.get("WATCHDOG") == "1"]
    assert 2 <= len(pings) <= 8, got  # about 0.6 s / 0.1 s (loose: a loaded machine)

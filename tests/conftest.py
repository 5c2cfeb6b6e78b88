"""Shared fixtures: a real mosquitto broker on 127.0.0.1, free ports."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 60.0) -> None:
    """Return once something accepts TCP on 127.0.0.1:``port`` (a bound for slow CI, not a figure)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class Mosquitto:
    port: int
    proc: subprocess.Popen[bytes]
    conf: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, sockets reset (a crash or power loss)."""
        if self.proc.poll() is None:
            self.proc.kill()  # also ends a paused one
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is read or answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def start(self) -> None:
        """Start again on the same port and config after :meth:`stop` or :meth:`kill`."""
        self.proc = _spawn(self.conf)
        wait_port(self.port)

    def restart(self) -> None:
        self.stop()
        self.proc = _spawn(self.conf)
        wait_port(self.port)


def _spawn(conf: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_mosquitto(tmp: Path, port: int | None = None) -> Mosquitto:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed: run ./scripts/test, which installs it")
    port = port or free_port()
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
        "max_queued_messages 100000\n"
    )
    proc = _spawn(conf)
    wait_port(port)
    return Mosquitto(port, proc, conf)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = start_mosquitto(tmp_path)
    yield broker
    broker.stop()

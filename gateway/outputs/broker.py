"""The embedded MQTT broker of the bench default: mosquitto as a child process on 127.0.0.1.

Field and lab configs name an external broker (mosquitto, EMQX): an embedded
broker has no TLS or ACLs configured and dies with the gateway.

Why mosquitto and no in-process fallback: the broker a user meets first must
keep MQTT's delivery rules as docs/topics.md states them, and amqtt 0.11/0.12
(the in-process broker this used to be) does not: a QoS 1 subscription
received QoS 0 topics at QoS 1 (MQTT 3.1.1 §3.8.4: delivered QoS is the
minimum of published and granted) and every retained message twice (§3.3.1.3:
once per new subscription). So without mosquitto the gateway refuses, saying
how to install it, rather than run a broker that teaches wrong semantics.

The child gets its own temporary config (listener on 127.0.0.1 only,
anonymous, no persistence), its stderr is kept in a file for the error
message, and it is terminated (then killed) on exit, SIGINT/SIGTERM of the
gateway included. If the gateway is killed outright (SIGKILL), the kernel
sends the child SIGTERM (``PR_SET_PDEATHSIG``) when it runs as the gateway's
user; a gateway running as root gets a mosquitto that switches to its own
``mosquitto`` user, which clears that signal (kernel rule), so there a
SIGKILLed gateway leaves the broker running. Dropping root matters more.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from hilgw.errors import ConfigError, TransportError

log = logging.getLogger(__name__)

#: How to get mosquitto; scripts/demo and scripts/test install it.
INSTALL_HINT = (
    "install mosquitto (Debian/Ubuntu: sudo apt-get install mosquitto; ./scripts/demo does it) "
    'or name an external broker ([mqtt] broker = "external", host, port)'
)
#: Debian puts the broker in /usr/sbin, which a user's PATH often lacks.
_SEARCH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 3.0
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable, or None."""
    exe = shutil.which("mosquitto")
    if exe:
        return exe
    return next((p for p in _SEARCH if os.access(p, os.X_OK)), None)


def _libc_prctl() -> Any:
    # Resolved once in the parent: the child between fork and exec only calls it
    # (no dlopen there, which could wait on a lock another thread held at fork).
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class EmbeddedBroker:
    """``async with EmbeddedBroker(port) as b:`` serves MQTT on 127.0.0.1:b.port (a mosquitto child).

    Port 0, or a port already taken, means a free ephemeral port. Raises
    ConfigError when mosquitto is not installed and TransportError when it
    does not start (with the tail of its stderr).
    """

    def __init__(self, port: int = 1883, host: str = "127.0.0.1", *, exe: str | None = None) -> None:
        self.host = host
        self.port = port if port and port_free(port, host) else free_port(host)
        self.exe = exe
        self.kind = "mosquitto"
        self.proc: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The broker process id while it runs."""
        return self.proc.pid if self.proc is not None else None

    async def __aenter__(self) -> Self:
        exe = self.exe or find_mosquitto()
        if exe is None:
            raise ConfigError(
                "mqtt.broker", f'"embedded" runs mosquitto, which is not installed: {INSTALL_HINT}'
            )
        self.exe = exe
        for attempt in range(2):
            try:
                await self._start(exe)
            except TransportError as exc:
                await self._stop()
                # Someone bound the port between our check and mosquitto's bind: once more elsewhere.
                if attempt == 0 and "in use" in str(exc):
                    self.port = free_port(self.host)
                    continue
                raise
            except BaseException:
                await self._stop()
                raise
            break
        log.info("embedded MQTT broker: %s (pid %d) on %s:%d", exe, self.pid, self.host, self.port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    def _prepare(self) -> Path:
        """The child's temporary config and stderr file; returns the config's path."""
        self._dir = tempfile.TemporaryDirectory(prefix="hilgw-mosquitto-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\n"
            # Store-and-forward for a slow bench subscriber, bounded (mosquitto's default is 1000).
            "max_queued_messages 10000\n"
        )
        self._stderr = open(Path(self._dir.name) / "stderr.log", "w+b")  # noqa: SIM115  # lives as long as the child
        return conf

    async def _start(self, exe: str) -> None:
        conf = self._prepare()
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            if self.proc.returncode is not None:
                raise TransportError(
                    f"embedded broker: {exe} exited with {self.proc.returncode} before listening on "
                    f"{self.host}:{self.port}; stderr: {self.stderr_tail() or '(empty)'}"
                )
            try:
                _, w = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if loop.time() > deadline:
                    raise TransportError(
                        f"embedded broker: {exe} not listening on {self.host}:{self.port} within "
                        f"{START_TIMEOUT_S:g} s; stderr: {self.stderr_tail() or '(empty)'}"
                    ) from None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 0.05)
            else:
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
                return

    def stderr_tail(self, lines: int = 5) -> str:
        """The last lines the broker wrote to stderr, joined with `` | ``."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        return " | ".join(ln.strip() for ln in text.strip().splitlines()[-lines:] if ln.strip())

    async def _stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

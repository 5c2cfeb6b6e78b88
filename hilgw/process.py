"""Start emulators as child processes and read their ready line (bench mode, emulators, tests).

Shared by gateway/ and sim_devices/ (it imports neither): the gateway starts
emulators by command and reads their ready lines, so it never imports them.

::

    with start_emulator(["--sensor", "radar-fwd", "--pty"]) as emu:
        port = serial.Serial(emu.ready["path"])   # or emu.serial_url
        ...

Each emulator is ``python -m sim_devices.emulate ARGS`` (the same interpreter
as the caller). Its stderr goes to a temporary file, quoted in the error when
it dies before it is ready, so a failed start is one readable exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from hilgw.errors import TransportError

__all__ = ["PARENT_ENV", "READY_TIMEOUT_S", "EmulatorProcess", "start_emulator", "stop_with_parent"]

#: How long a child may take to print its ready line (s). A bound, not an
#: expectation: on a loaded 2-core machine the interpreter, numpy/scipy and
#: libasterix's generated tables (~7 s alone) come before the first line, and a
#: child that fails exits at once and is reported at once.
READY_TIMEOUT_S = 60.0

_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)

#: Set by :func:`start_emulator` to the starting process's pid; an emulator that
#: calls :func:`stop_with_parent` stops when that process is gone.
PARENT_ENV = "HILGW_PARENT_PID"

#: How often an emulator looks whether its parent is still there (s).
PARENT_POLL_S = 0.25


def stop_with_parent(poll_s: float = PARENT_POLL_S) -> None:
    """SIGTERM this process (its own graceful stop) once the process that started it is gone.

    A parent stopped cleanly stops its emulators itself; one that is SIGKILLed
    (or crashes) cannot, and its emulators would hold their ptys, CAN groups
    and UDP ports until someone finds them. ``PR_SET_PDEATHSIG`` is tied to
    the parent *thread* that forked (start_emulator may run on a worker
    thread that ends first), so this polls ``getppid()`` instead: a child is
    re-parented (to init or a subreaper) when its parent dies. No-op unless
    started by :func:`start_emulator` (``HILGW_PARENT_PID`` set).
    """
    want = os.environ.pop(PARENT_ENV, None)  # not for what this process starts in turn
    if not want or not want.isdigit():
        return
    parent = int(want)
    if os.getppid() != parent:  # gone before we got here
        os.kill(os.getpid(), signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


class EmulatorProcess:
    """A running emulator: the Popen, its parsed ready line, and an idempotent :meth:`stop`."""

    def __init__(self, popen: subprocess.Popen[bytes], ready: dict[str, Any], stderr: IO[bytes]) -> None:
        self.popen = popen
        self.ready = ready
        self._stderr = stderr
        self._stopped = False
        self._stdout_rest = b""  # stdout read past the ready line
        #: The emulator's ``stopped`` line (counters) once :meth:`stop` has run, if it printed one.
        self.final: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def serial_url(self) -> str:
        """What a serial transport opens: the pty path, or ``socket://host:port`` (pyserial URL)."""
        if "path" in self.ready:
            return str(self.ready["path"])
        return f"socket://{self.ready['host']}:{self.ready['port']}"

    def stderr_text(self) -> str:
        """Everything the emulator wrote to stderr so far."""
        if self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, timeout_s: float = 3.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Safe to call twice; returns the exit code."""
        if not self._stopped:
            self._stopped = True
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
            self.final = _last_json(self._stdout_rest, self.popen.stdout)
            if self.popen.stdout is not None:
                self.popen.stdout.close()
            self._stderr.close()
        return self.popen.returncode

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorProcess(pid={self.pid}, ready={self.ready!r})"


def _last_json(head: bytes, stream: IO[bytes] | None) -> dict[str, Any] | None:
    text = head
    if stream is not None:
        with contextlib.suppress(OSError, ValueError):
            text += stream.read()
    last = None
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                last = obj
    return last


def start_emulator(
    args: list[str], timeout_s: float = READY_TIMEOUT_S, *, module: str = "sim_devices.emulate"
) -> EmulatorProcess:
    """Start ``python -m MODULE *args`` (default ``sim_devices.emulate``) and wait for its ready line.

    Any module with the same contract (one JSON ready line on stdout, SIGTERM
    stops it) can be started: ``sim_devices.truth_publisher``, ...
    Raises :class:`TransportError` if it exits or stays silent for
    ``timeout_s`` (the child is killed then), quoting its stderr.
    """
    env = dict(os.environ)
    # Make the package importable from a source checkout as from an install.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[PARENT_ENV] = str(os.getpid())  # the child stops when this process is gone
    # Not a context manager: the file lives as long as the child; stop() closes it.
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    popen = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        bufsize=0,
    )
    proc = EmulatorProcess(popen, {}, stderr)
    try:
        proc.ready, proc._stdout_rest = _read_ready(popen, timeout_s)
    except TransportError as exc:
        if popen.poll() is None:
            popen.kill()
        popen.wait()
        tail = " | ".join(ln.strip() for ln in proc.stderr_text().strip().splitlines()[-5:] if ln.strip())
        proc.stop()
        raise TransportError(f"{exc}; stderr: {tail or '(empty)'}") from None
    except BaseException:
        proc.stop(timeout_s=1.0)
        raise
    return proc


def _read_ready(popen: subprocess.Popen[bytes], timeout_s: float) -> tuple[dict[str, Any], bytes]:
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportError(f"emulator (pid {popen.pid}) not ready within {timeout_s:g} s")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = popen.wait()
                raise TransportError(
                    f"emulator (pid {popen.pid}) exited with code {code} before it was ready"
                )
            buf += chunk
    line, _, rest = buf.partition(b"\n")
    try:
        ready = json.loads(line)
    except ValueError:
        raise TransportError(f"emulator (pid {popen.pid}) printed {line[:200]!r}, not a ready line") from None
    if not isinstance(ready, dict) or ready.get("event") != "ready":
        raise TransportError(f"emulator (pid {popen.pid}) printed {line[:200]!r}, not a ready line")
    return ready, rest

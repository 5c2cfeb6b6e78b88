"""A minimal sd_notify client: tells systemd READY=1, WATCHDOG=1, STOPPING=1, STATUS=...

Written by hand on purpose: the protocol is one AF_UNIX datagram of
newline-separated ``KEY=VALUE`` lines sent to the socket named by
``$NOTIFY_SOCKET`` (sd_notify(3)), about forty lines here, and a dependency
(systemd-python needs libsystemd headers to build; the pure ones are unkept)
would buy nothing. A path starting with ``@`` is in the Linux abstract socket
namespace: the ``@`` stands for a leading NUL byte (unix(7)).

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the gateway
runs the same in a terminal, a container or a unit.
"""

from __future__ import annotations

import os
import socket

__all__ = ["Notifier", "watchdog_period_s"]


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET`` (or ``address``); never raises."""

    def __init__(self, address: str | None = None) -> None:
        addr = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        # "@name" is the abstract namespace: the kernel address starts with NUL.
        self.address: str | None = "\0" + addr[1:] if addr.startswith("@") else (addr or None)
        self.errors = 0  # sends that failed (systemd gone, socket full): counted, not fatal
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (keys upper-cased); True when it was sent."""
        if self.address is None:
            return False
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(msg.encode(), self.address)
        except OSError:
            self.errors += 1
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(ready=1, **({"status": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    def stopping(self, status: str = "") -> bool:
        return self.notify(stopping=1, **({"status": status} if status else {}))

    def status(self, text: str) -> bool:
        # STATUS is one line: a newline would start a new KEY=VALUE assignment.
        return self.notify(status=text.replace("\n", " "))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_period_s(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC`` (the
    interval sd_watchdog_enabled(3) recommends), or None when systemd did not
    ask for pings. ``$WATCHDOG_PID``, when set, must be this process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6

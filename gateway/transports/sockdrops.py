"""Datagrams and frames the kernel dropped at a full socket receive buffer (Linux).

A reader that falls behind (a busy event loop, a starved CPU) does not see
these losses: the kernel drops what arrives at a full receive buffer and
counts it on the socket. CAN (gateway/transports/can.py) and UDP
(gateway/transports/udp.py) read that count and report it as the device's
``kernel_overflow`` drops, so no loss goes uncounted (docs/architecture.md,
rule 5).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Protocol

__all__ = ["KernelDrops", "set_recv_buffer"]

log = logging.getLogger(__name__)


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


#: linux/asm-generic/socket.h SO_MEMINFO, and in the u32 array it returns
#: (linux/sock_diag.h SK_MEMINFO_*) the index of SK_MEMINFO_DROPS and the count.
_SO_MEMINFO = 55
_SK_MEMINFO_DROPS = 8
_SK_MEMINFO_VARS = 9


class KernelDrops:
    """The count of datagrams or frames the kernel dropped on a bus's socket.

    That is the socket's ``sk_drops``: the same counter ``SO_RXQ_OVFL``
    (socket(7)) attaches to each received message, raised when a message
    arrives at a full receive buffer (for CAN_RAW and UDP sockets). python-can
    reads the socket itself (``recvmsg`` with its own ancillary buffer), so
    the per-message option cannot be seen from here; ``SO_MEMINFO`` (Linux
    4.6) reads the same counter with one ``getsockopt`` at any time, from a
    second handle on the socket. Counted from 0 at the socket's creation, so
    drops before the reader started count too.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.last = 0

    @classmethod
    def of(cls, bus: _HasFileno) -> KernelDrops | None:
        """For a bus on a Linux socket whose kernel has ``SO_MEMINFO``; else None."""
        if sys.platform != "linux":
            return None
        try:
            fd = bus.fileno()
        except (NotImplementedError, OSError, ValueError):
            return None
        if fd < 0:
            return None
        try:
            sock = socket.socket(fileno=os.dup(fd))  # OSError: not a socket (a serial adapter)
        except OSError:
            return None
        drops = cls(sock)
        try:
            drops.read()
        except OSError:  # a kernel without SO_MEMINFO
            sock.close()
            return None
        return drops

    def read(self) -> int:
        """The socket's drop count now (raises ``OSError``)."""
        raw = self._sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4 * _SK_MEMINFO_VARS)
        if len(raw) < 4 * (_SK_MEMINFO_DROPS + 1):
            raise OSError(f"SO_MEMINFO gave {len(raw)} bytes, no drop count")
        return int.from_bytes(raw[4 * _SK_MEMINFO_DROPS : 4 * (_SK_MEMINFO_DROPS + 1)], sys.byteorder)

    def new(self) -> int:
        """Drops since the previous call (0 once the socket is gone)."""
        try:
            now = self.read()
        except OSError:
            return 0
        n, self.last = max(0, now - self.last), max(now, self.last)
        return n

    def close(self) -> None:
        self._sock.close()


def set_recv_buffer(sock: socket.socket, nbytes: int, describe: str) -> int:
    """Ask for an ``SO_RCVBUF`` of ``nbytes`` on ``sock``; the size the kernel gives.

    Linux doubles the value asked for (the other half pays for its
    bookkeeping, socket(7)) and caps the request at ``net.core.rmem_max``, so
    the effective size is read back, logged, and a warning says when the cap
    took part of the request (the receiver then holds a shorter stall than
    configured; raise ``net.core.rmem_max``). Raises ``OSError``.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, nbytes)
    got = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    # Linux reports twice what it granted; other systems report the grant.
    granted = got // 2 if sys.platform == "linux" else got
    if granted < nbytes:
        log.warning(
            "%s: receive buffer %d bytes of the %d asked (recv_buffer_bytes): the kernel caps it "
            "(net.core.rmem_max); a stall of the reader overflows it sooner",
            describe,
            got,
            nbytes,
        )
    else:
        log.info("%s: receive buffer %d bytes (asked %d)", describe, got, nbytes)
    return got

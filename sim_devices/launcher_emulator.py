"""Launcher interface emulator: ``python -m sim_devices.launcher_emulator``.

Plays the launcher end of docs/icd/launcher.md on CAN FD (``--transport can``)
or on a serial line (``--transport serial``: a raw pty whose slave path is in
the ready line). It checks every cue and cancel as the ICD requires
(:class:`drivers.launcher.CueValidator`: addressee, signature, key, MAC,
sequence, window, freshness against its own clock, readiness), answers
ack/nack, and sends a heartbeat (``--heartbeat-hz``). It holds accepted cues
and does nothing else with them: nothing here models a weapon.

Misbehaviour switches, for testing the gateway's cue path:
``--no-ack`` (never answer), ``--ack-delay S`` (answer S seconds late),
``--nack REASON`` (answer every authentic cue with this nack),
``--silent-heartbeat`` (no heartbeat), ``--state not_ready|fault``.

Keys: ``--key ID:HEX`` (repeatable). One JSON line on stdout when ready, one
per cue/cancel handled (``{"event": "cue", ...}``), one when stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.base import Rejected, Role
from drivers.can_radar import CanFrame
from drivers.launcher import (
    Ack,
    AckResult,
    Cue,
    CueCancel,
    CueValidator,
    LauncherCanCodec,
    LauncherEvent,
    LauncherSerialCodec,
    LauncherState,
    LauncherStatus,
    NackReason,
)
from gateway.config import CanTransportConfig
from gateway.transports.can import CanTransport
from hilgw.errors import TransportError

__all__ = ["Behaviour", "LauncherEmulator", "build_parser", "main"]

_U32 = (1 << 32) - 1


@dataclass
class Behaviour:
    """How the emulated launcher (mis)behaves."""

    no_ack: bool = False
    ack_delay_s: float = 0.0
    nack: NackReason | None = None
    silent_heartbeat: bool = False
    state: LauncherState = LauncherState.READY


class LauncherEmulator:
    """The launcher's logic without I/O: feed it events, it returns answers.

    ``clock`` is the launcher's own UTC clock (ns); freshness is judged by it.
    """

    def __init__(
        self,
        launcher_id: int,
        keys: dict[int, bytes],
        behaviour: Behaviour | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        max_window_s: float = 60.0,
    ) -> None:
        self.launcher_id = launcher_id
        self.behaviour = behaviour or Behaviour()
        self.validator = CueValidator(launcher_id, keys, max_window_ns=int(max_window_s * 1e9))
        self.clock = clock
        self._ack_seq = 0
        self._hb_seq = 0
        self.log: list[dict[str, Any]] = []

    def handle(self, event: LauncherEvent | Rejected) -> Ack | None:
        """The answer to one received event (None: nothing to answer)."""
        now = self.clock()
        if isinstance(event, Cue):
            reason = self.validator.check_cue(event, now, self.behaviour.state)
            kind, cue_id, seq = "cue", event.cue_id, event.sequence or 0
        elif isinstance(event, CueCancel):
            reason = self.validator.check_cancel(event)
            kind, cue_id, seq = "cancel", event.cue_id, event.sequence or 0
        else:
            return None  # a rejected frame: nothing addressable to answer
        if reason is NackReason.NONE and self.behaviour.nack is not None:
            reason = self.behaviour.nack  # told to refuse what it would accept
        self.log.append({"event": kind, "cue_id": cue_id, "sequence": seq, "reason": reason.name})
        self._ack_seq = (self._ack_seq + 1) & _U32
        return Ack(
            launcher_id=self.launcher_id,
            result=AckResult.ACK if reason is NackReason.NONE else AckResult.NACK,
            reason=reason,
            cue_sequence=seq,
            cue_id=cue_id,
            ack_sequence=self._ack_seq,
            launcher_time_ns=now,
        )

    def heartbeat(self) -> LauncherStatus:
        self._hb_seq = (self._hb_seq + 1) & _U32
        return LauncherStatus(
            launcher_id=self.launcher_id,
            state=self.behaviour.state,
            sequence=self._hb_seq,
            launcher_time_ns=self.clock(),
            last_accepted_sequence=self.validator.highest_sequence,
        )


class _Link:
    """The transport side: async receive of events, send of events."""

    async def receive(self) -> list[LauncherEvent | Rejected]:
        raise NotImplementedError

    async def send(self, event: LauncherEvent) -> None:
        raise NotImplementedError

    def ready_info(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None


class CanLink(_Link):
    def __init__(self, transport: CanTransport, codec: LauncherCanCodec) -> None:
        self.transport, self.codec = transport, codec

    async def receive(self) -> list[LauncherEvent | Rejected]:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
        # cancellation that arrives as the inner await completes (CPython gh-86296),
        # and this loop would then never stop.
        frames: list[CanFrame] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.codec.mac_timeout_ns / 1e9):
                frames = await self.transport.recv_batch()
        out = self.codec.receive_frames(frames)
        out.extend(self.codec.expire(time.time_ns()))
        return out

    async def send(self, event: LauncherEvent) -> None:
        await self.transport.send_many(self.codec.send(event))

    async def close(self) -> None:
        await self.transport.close()


class PtyLink(_Link):
    """Master side of a raw pty; the gateway opens the slave as a serial port."""

    def __init__(self, codec: LauncherSerialCodec) -> None:
        self.codec = codec
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave, termios.TCSANOW)  # binary frames: no byte translated
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self._data: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            self._data.put_nowait(os.read(self.master, 65536))

    async def receive(self) -> list[LauncherEvent | Rejected]:
        self.codec.receive_data(await self._data.get())
        return self.codec.drain()

    async def send(self, event: LauncherEvent) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.write(self.master, self.codec.send(event))  # a full pty loses bytes, as a line would

    def ready_info(self) -> dict[str, Any]:
        return {"path": self.path}

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


async def serve(emu: LauncherEmulator, link: _Link, stop: asyncio.Event, heartbeat_hz: float) -> None:
    """Answer cues and send heartbeats until ``stop`` is set."""
    pending: set[asyncio.Task[None]] = set()

    async def answer(ack: Ack, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        await link.send(ack)

    async def heartbeats() -> None:
        while True:
            if not emu.behaviour.silent_heartbeat:
                await link.send(emu.heartbeat())
            await asyncio.sleep(1.0 / heartbeat_hz)

    async def receiver() -> None:
        while True:
            for event in await link.receive():
                ack = emu.handle(event)
                if ack is not None:
                    _emit(emu.log[-1])
                if ack is None or emu.behaviour.no_ack:
                    continue
                task = asyncio.create_task(answer(ack, emu.behaviour.ack_delay_s))
                pending.add(task)
                task.add_done_callback(pending.discard)

    tasks = [asyncio.create_task(heartbeats()), asyncio.create_task(receiver())]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stopper and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]  # checked not None
    finally:
        for t in [*tasks, stopper, *pending]:
            t.cancel()
        await asyncio.gather(*tasks, stopper, *pending, return_exceptions=True)


def _emit(obj: dict[str, Any]) -> None:
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def _key(text: str) -> tuple[int, bytes]:
    kid, _, hexkey = text.partition(":")
    try:
        return int(kid), bytes.fromhex(hexkey)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--key wants ID:HEX, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sim_devices.launcher_emulator", description=__doc__.split("\n")[0]
    )
    p.add_argument("--transport", choices=("can", "serial"), default="can")
    p.add_argument("--interface", default="virtual", help="python-can interface (CAN FD)")
    p.add_argument("--channel", default="hilgw-launcher", help="python-can channel")
    p.add_argument("--id-offset", type=int, default=0)
    p.add_argument("--launcher-id", type=int, default=1)
    p.add_argument("--key", type=_key, action="append", default=[], metavar="ID:HEX")
    p.add_argument("--heartbeat-hz", type=float, default=2.0)
    p.add_argument("--max-window-s", type=float, default=60.0)
    p.add_argument("--state", choices=("ready", "not_ready", "fault"), default="ready")
    p.add_argument("--no-ack", action="store_true", help="never answer cues")
    p.add_argument("--ack-delay", type=float, default=0.0, metavar="S", help="answer S seconds late")
    p.add_argument(
        "--nack", choices=[r.name.lower() for r in NackReason if r is not NackReason.NONE], default=None
    )
    p.add_argument("--silent-heartbeat", action="store_true", help="send no heartbeat")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until SIGTERM)")
    return p


async def _main(ns: argparse.Namespace) -> int:
    behaviour = Behaviour(
        no_ack=ns.no_ack,
        ack_delay_s=ns.ack_delay,
        nack=NackReason[ns.nack.upper()] if ns.nack else None,
        silent_heartbeat=ns.silent_heartbeat,
        state=LauncherState[ns.state.upper()],
    )
    emu = LauncherEmulator(ns.launcher_id, dict(ns.key), behaviour, max_window_s=ns.max_window_s)
    link: _Link
    if ns.transport == "can":
        cfg = CanTransportConfig(kind="can", interface=ns.interface, channel=ns.channel, fd=True)
        transport = CanTransport(cfg)
        try:
            await transport.open()
        except TransportError as exc:
            print(f"launcher_emulator: {exc}", file=sys.stderr)
            return 3
        link = CanLink(
            transport, LauncherCanCodec(Role.DEVICE, launcher_id=ns.launcher_id, id_offset=ns.id_offset)
        )
    else:
        link = PtyLink(LauncherSerialCodec(Role.DEVICE, launcher_id=ns.launcher_id))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ns.duration:
        loop.call_later(ns.duration, stop.set)
    _emit(
        {
            "event": "ready",
            "device": "launcher",
            "transport": ns.transport,
            "launcher_id": ns.launcher_id,
            **link.ready_info(),
            "pid": os.getpid(),
        }
    )
    rc = 0
    try:
        await serve(emu, link, stop, ns.heartbeat_hz)
    except TransportError as exc:
        print(f"launcher_emulator: {exc}", file=sys.stderr)
        rc = 3
    finally:
        await link.close()
        _emit({"event": "stopped", "device": "launcher", "highest_sequence": emu.validator.highest_sequence})
    return rc


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    ns = build_parser().parse_args(argv)
    if ns.heartbeat_hz <= 0 or ns.ack_delay < 0:
        print("launcher_emulator: --heartbeat-hz must be > 0 and --ack-delay >= 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(ns))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Launcher interface emulator: ``python -m sim_devices.launcher_emulator``.

Plays the launcher end of docs/icd/launcher.md on CAN FD (``--transport can``)
or on a serial line (``--transport serial``: a raw pty whose slave path is in
the ready line). It checks every cue and cancel as the ICD requires
(:class:`drivers.launcher.CueValidator`: addressee, signature, key, MAC,
sequence, window, freshness against its own clock, readiness), answers
ack/nack, and sends a heartbeat (``--heartbeat-hz``). Its acks and
heartbeats are signed by its codec with its key (ICD v2 §7.5; ``--icd-version
1`` plays an old launcher that does not sign). It holds accepted cues and does
nothing else with them: nothing here models a weapon.

Misbehaviour switches, for testing the gateway's cue path:
``--no-ack`` (never answer), ``--ack-delay S`` (answer S seconds late),
``--nack REASON`` (answer every authentic cue with this nack),
``--silent-heartbeat`` (no heartbeat), ``--state not_ready|fault``.

Keys: ``--key ID:HEX`` (repeatable). One JSON line on stdout when ready, one
per cue/cancel handled (``{"event": "cue", ...}``; not with ``--no-events``),
one when stopped (with the verdicts and fault counters).

From a scenario (``--scenario FILE --launcher ID``, what ``hilgw emulate
--scenario`` runs for each ``[[launchers]]`` entry): transport, wire id, keys,
heartbeat rate and CAN bus come from the scenario, and the launcher's fault
timeline is applied on the scenario clock (``--epoch-ns``, ``--speed``, as
the sensor emulators): ``silent_heartbeat`` (no heartbeat), ``launcher_nack``
(authentic cues nacked NOT_READY), ``launcher_no_ack`` (no answer),
``dropout`` (nothing sent, nothing heard), ``garbage`` / ``bad_crc`` (serial:
junk frames, corrupted CRCs), ``serial_unplug`` (the pty pair closed and
reopened; the ready ``path`` is then a stable symlink that follows it),
``can_bus_off`` (one SocketCAN bus-off error frame, then silence and
deafness until the window ends), and the answers an attacker (or a broken
launcher) would put on the link instead of the real ones: ``launcher_forged``
(acks and heartbeats tagged under a key the gateway does not hold),
``launcher_replayed`` (the last authentic heartbeat/ack before the window,
sent again byte for byte) and ``launcher_stale`` (properly signed, but
``LauncherTime`` ``step_s`` off, default -5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.base import Rejected, Role
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
from gateway.sections.transports import CanTransportConfig
from gateway.transports.can import CAN_ERR_BUSOFF, CanTransport
from hilgw.can import CanFrame
from hilgw.errors import ConfigError, HilgwError, TransportError
from hilgw.keys import resolve_keys
from hilgw.process import stop_with_parent
from sim_devices import emulate
from sim_devices.can_device import EmulatorCanTransport
from sim_devices.faults import FaultSchedule
from sim_devices.launcher_faults import LauncherFaults

__all__ = ["Behaviour", "LauncherEmulator", "LauncherFaults", "build_parser", "main"]


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
        self.log: list[dict[str, Any]] = []
        #: Verdicts by ``"<cue|cancel>:<reason>"``, for the stopped line.
        self.verdicts: Counter[str] = Counter()

    def handle(self, event: LauncherEvent | Rejected, nack: NackReason | None = None) -> Ack | None:
        """The answer to one received event (None: nothing to answer).

        ``nack``: refuse, with this reason, what would be accepted (a fault of
        the timeline); overrides the behaviour's whole-run ``nack``.
        """
        now = self.clock()
        if isinstance(event, Cue):
            reason = self.validator.check_cue(event, now, self.behaviour.state)
            kind, cue_id, seq = "cue", event.cue_id, event.sequence or 0
        elif isinstance(event, CueCancel):
            reason = self.validator.check_cancel(event)
            kind, cue_id, seq = "cancel", event.cue_id, event.sequence or 0
        else:
            return None  # a rejected frame: nothing addressable to answer
        refuse = nack if nack is not None else self.behaviour.nack
        if reason is NackReason.NONE and refuse is not None:
            reason = refuse  # told to refuse what it would accept
        # "mac": the tag as received, so a test can hold it against the gateway's journal.
        self.log.append(
            {"event": kind, "cue_id": cue_id, "sequence": seq, "reason": reason.name, "mac": event.mac.hex()}
        )
        self.verdicts[f"{kind}:{reason.name}"] += 1
        # AckSequence (the freshness counter), key id and tag: the codec's, when it sends (ICD §7.5).
        return Ack(
            launcher_id=self.launcher_id,
            result=AckResult.ACK if reason is NackReason.NONE else AckResult.NACK,
            reason=reason,
            cue_sequence=seq,
            cue_id=cue_id,
            ack_sequence=0,
            launcher_time_ns=now,
        )

    def heartbeat(self) -> LauncherStatus:
        """A heartbeat to send now (its counter and tag: the codec's, ICD §7.5)."""
        return LauncherStatus(
            launcher_id=self.launcher_id,
            state=self.behaviour.state,
            sequence=0,
            launcher_time_ns=self.clock(),
            last_accepted_sequence=self.validator.highest_sequence,
        )


class _Link:
    """The transport side: async receive of events, send of events, and the faults a line can have."""

    @property
    def plugged(self) -> bool:
        """False while a serial_unplug fault holds the line unplugged."""
        return True

    async def receive(self) -> list[LauncherEvent | Rejected]:
        raise NotImplementedError

    async def send(self, event: LauncherEvent) -> None:
        raise NotImplementedError

    def seal(self, event: Ack | LauncherStatus) -> Ack | LauncherStatus:
        """The answer signed by the link's codec (ICD §7.5), ready to send."""
        sealed = self._codec().seal(event)
        assert isinstance(sealed, Ack | LauncherStatus)
        return sealed

    def forge(self, sealed: Ack | LauncherStatus, key: bytes) -> Ack | LauncherStatus:
        """``sealed`` tagged under ``key`` instead (what an injector without the key can do)."""
        signer = self._codec().signer
        if signer is None:  # a v1 launcher tags nothing: a forgery looks like the real thing
            return sealed
        out = signer.sign(sealed, key)
        assert isinstance(out, Ack | LauncherStatus)
        return out

    def _codec(self) -> LauncherCanCodec | LauncherSerialCodec:
        raise NotImplementedError

    def ready_info(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None

    async def unplug(self) -> None:
        raise TransportError("only a serial line can be unplugged")

    async def replug(self) -> None:
        raise TransportError("only a serial line can be unplugged")

    async def bus_off(self) -> None:
        raise TransportError("only a CAN controller goes bus-off")


class CanLink(_Link):
    def __init__(self, transport: CanTransport, codec: LauncherCanCodec) -> None:
        self.transport, self.codec = transport, codec

    def _codec(self) -> LauncherCanCodec:
        return self.codec

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

    async def bus_off(self) -> None:
        """What the gateway sees of a controller going bus-off: a SocketCAN error frame."""
        if not isinstance(self.transport, EmulatorCanTransport):
            raise TransportError(f"{self.transport.describe}: bus-off needs an EmulatorCanTransport")
        await self.transport.send_error_frame(CAN_ERR_BUSOFF)

    async def close(self) -> None:
        await self.transport.close()


class _DuplexPty(emulate.PtyLink):
    """The serial radar emulator's pty pair (unplug, replug, stable link), reading the gateway's writes."""

    def __init__(
        self, counters: emulate.Counters, on_data: Callable[[bytes], None], *, stable_link: bool
    ) -> None:
        self._on_data = on_data
        super().__init__(counters, stable_link=stable_link)

    def _drain_input(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            chunk = os.read(self.master, 65536)
            self.counters.bytes_received += len(chunk)
            self._on_data(chunk)


class PtyLink(_Link):
    """Master side of a raw pty; the gateway opens the slave (or the stable link) as a serial port.

    ``mutate`` rewrites outgoing bytes (the garbage and bad_crc faults). Writes
    never block: a full pty loses bytes, as a line without listener would.
    """

    def __init__(
        self,
        codec: LauncherSerialCodec,
        *,
        stable_link: bool = False,
        mutate: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.codec = codec
        self.mutate = mutate
        self.counters = emulate.Counters()
        self._data: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self.pty = _DuplexPty(self.counters, self._data.put_nowait, stable_link=stable_link)
        self.pty.start(self._loop)

    @property
    def plugged(self) -> bool:
        return self.pty.plugged

    def _codec(self) -> LauncherSerialCodec:
        return self.codec

    @property
    def path(self) -> str:
        return self.pty.path

    async def receive(self) -> list[LauncherEvent | Rejected]:
        self.codec.receive_data(await self._data.get())
        return self.codec.drain()

    async def send(self, event: LauncherEvent) -> None:
        data = self.codec.send(event)
        if self.mutate is not None:
            data = self.mutate(data)
        self.pty.write(data)

    def ready_info(self) -> dict[str, Any]:
        return {"path": self.pty.path, "pty": self.pty.pty_path}

    async def unplug(self) -> None:
        await self.pty.unplug(self._loop)

    async def replug(self) -> None:
        await self.pty.replug(self._loop)

    async def close(self) -> None:
        await self.pty.close(self._loop)


async def serve(
    emu: LauncherEmulator,
    link: _Link,
    stop: asyncio.Event,
    heartbeat_hz: float,
    faults: LauncherFaults | None = None,
    *,
    events: bool = True,
) -> None:
    """Answer cues and send heartbeats until ``stop`` is set (``events``: one stdout line per verdict)."""
    pending: set[asyncio.Task[None]] = set()
    counts: Counter[str] = faults.counts if faults is not None else Counter()

    def outgoing(event: Ack | LauncherStatus) -> Ack | LauncherStatus:
        if faults is None:
            return link.seal(event)
        return faults.reply(event, link.seal, link.forge)

    async def answer(ack: Ack, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
            ack = dataclasses.replace(ack, launcher_time_ns=emu.clock())  # stamped when it leaves
        if faults is not None and faults.deaf():
            counts["acks_lost"] += 1
            return
        await link.send(outgoing(ack))

    async def heartbeats() -> None:
        while True:
            if faults is not None and faults.silent():
                counts["heartbeats_silenced"] += 1
            elif not emu.behaviour.silent_heartbeat:
                await link.send(outgoing(emu.heartbeat()))
            await asyncio.sleep(1.0 / heartbeat_hz)

    async def receiver() -> None:
        while True:
            received = await link.receive()
            if faults is not None and received and faults.deaf():
                counts["frames_ignored"] += len(received)
                continue
            for event in received:
                ack = emu.handle(event, nack=faults.nack() if faults is not None else None)
                if ack is not None and events:
                    _emit(emu.log[-1])
                if ack is None:
                    continue
                if emu.behaviour.no_ack or (faults is not None and faults.no_ack()):
                    counts["acks_withheld"] += 1
                    continue
                task = asyncio.create_task(answer(ack, emu.behaviour.ack_delay_s))
                pending.add(task)
                task.add_done_callback(pending.discard)

    tasks = [asyncio.create_task(heartbeats()), asyncio.create_task(receiver())]
    if faults is not None and faults.schedule:
        tasks.append(asyncio.create_task(faults.run_edges(link)))
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
    scn = p.add_argument_group("from a scenario (the other options then override it)")
    scn.add_argument("--scenario", default=None, help="scenario file or builtin:NAME")
    scn.add_argument("--launcher", default=None, help="the [[launchers]] id to play")
    scn.add_argument("--epoch-ns", type=int, default=None, help="UTC ns of scenario time 0 (default: now)")
    scn.add_argument("--speed", type=float, default=1.0, help="scenario seconds per wall second")
    p.add_argument("--transport", choices=("can", "serial"), default=None, help="default: can")
    p.add_argument("--interface", default=None, help="python-can interface (CAN FD); default: virtual")
    p.add_argument("--channel", default=None, help="python-can channel; default: hilgw-launcher")
    p.add_argument("--id-offset", type=int, default=None)
    p.add_argument("--launcher-id", type=int, default=None, help="id on the wire; default: 1")
    p.add_argument("--key", type=_key, action="append", default=[], metavar="ID:HEX")
    p.add_argument(
        "--icd-version",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: acks and heartbeats signed (default); 1: an old launcher that signs nothing",
    )
    p.add_argument("--heartbeat-hz", type=float, default=None, help="default: 2")
    p.add_argument("--max-window-s", type=float, default=60.0)
    p.add_argument("--state", choices=("ready", "not_ready", "fault"), default="ready")
    p.add_argument("--no-ack", action="store_true", help="never answer cues")
    p.add_argument("--ack-delay", type=float, default=0.0, metavar="S", help="answer S seconds late")
    p.add_argument(
        "--nack", choices=[r.name.lower() for r in NackReason if r is not NackReason.NONE], default=None
    )
    p.add_argument("--silent-heartbeat", action="store_true", help="send no heartbeat")
    p.add_argument("--no-events", action="store_true", help="no stdout line per cue (counted at stop)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until SIGTERM)")
    return p


def resolve(ns: argparse.Namespace) -> tuple[argparse.Namespace, LauncherFaults | None]:
    """Fill the options left unset from the scenario's launcher (or the defaults); its fault timeline.

    Raises :class:`ConfigError` naming the scenario key that is missing or wrong.
    """
    faults = None
    if ns.scenario is not None:
        from sim_devices.scenario import resolve_scenario

        scenario = resolve_scenario(ns.scenario)
        if not ns.launcher:
            raise ConfigError("--launcher", "which [[launchers]] id to play, with --scenario")
        try:
            lc = scenario.launcher(ns.launcher)
        except KeyError:
            raise ConfigError("--launcher", f"no launcher {ns.launcher!r} in the scenario") from None
        where = f"launchers[{lc.id}]"
        ns.transport = ns.transport or lc.transport
        if ns.transport == "can" and lc.can is not None:
            if not lc.can.fd:
                raise ConfigError(f"{where}.can.fd", "the launcher ICD runs on CAN FD (fd = true)")
            # Each option given on the command line wins on its own.
            ns.interface = ns.interface or lc.can.interface
            ns.channel = ns.channel or lc.can.channel
            ns.id_offset = lc.can.id_offset if ns.id_offset is None else ns.id_offset
        elif ns.transport == "can" and ns.interface is None:
            raise ConfigError(f"{where}.can", "a CAN launcher needs can = {interface, channel} to run")
        if ns.launcher_id is None:
            ns.launcher_id = scenario.launcher_wire_id(lc.id)
        if ns.heartbeat_hz is None:
            ns.heartbeat_hz = lc.heartbeat_hz
        if not ns.key:
            ns.key = sorted(resolve_keys(lc.keys, where=f"{where}.keys").items())
        if not ns.key:
            print(
                f"launcher_emulator: warning: {where}.keys is empty: every cue is nacked UNKNOWN_KEY, "
                "and its acks and heartbeats go unsigned (a gateway drops them: auth_unsigned)",
                file=sys.stderr,
            )
        epoch_ns = ns.epoch_ns if ns.epoch_ns is not None else time.time_ns()
        seed = (scenario.scenario.seed * 1_000_003 + zlib.crc32(lc.id.encode())) & 0xFFFFFFFF
        faults = LauncherFaults(
            FaultSchedule.of(scenario, lc.id), epoch_ns=epoch_ns, speed=ns.speed, seed=seed
        )
    ns.transport = ns.transport or "can"
    ns.interface = ns.interface or "virtual"
    ns.channel = ns.channel or "hilgw-launcher"
    ns.id_offset = ns.id_offset or 0
    ns.launcher_id = 1 if ns.launcher_id is None else ns.launcher_id
    ns.heartbeat_hz = 2.0 if ns.heartbeat_hz is None else ns.heartbeat_hz
    for key, bad in (
        ("--heartbeat-hz", ns.heartbeat_hz <= 0),
        ("--speed", ns.speed <= 0),
        ("--ack-delay", ns.ack_delay < 0),
    ):
        if bad:
            raise ConfigError(key, "must be > 0" if key != "--ack-delay" else "must be >= 0")
    return ns, faults


async def _main(ns: argparse.Namespace, faults: LauncherFaults | None) -> int:
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
        transport = EmulatorCanTransport(cfg)
        try:
            await transport.open()
        except TransportError as exc:
            print(f"launcher_emulator: {exc}", file=sys.stderr)
            return 3
        codec = LauncherCanCodec(
            Role.DEVICE,
            launcher_id=ns.launcher_id,
            keys=dict(ns.key),
            id_offset=ns.id_offset,
            icd_version=ns.icd_version,
        )
        link = CanLink(transport, codec)
    else:
        unplugs = faults is not None and "serial_unplug" in faults.schedule.kinds()
        link = PtyLink(
            LauncherSerialCodec(
                Role.DEVICE, launcher_id=ns.launcher_id, keys=dict(ns.key), icd_version=ns.icd_version
            ),
            stable_link=unplugs,
            mutate=faults.mutate if faults is not None and faults.schedule else None,
        )
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
            "launcher": ns.launcher,
            "transport": ns.transport,
            "launcher_id": ns.launcher_id,
            "icd_version": ns.icd_version,
            **link.ready_info(),
            **({"interface": ns.interface, "channel": ns.channel} if ns.transport == "can" else {}),
            "pid": os.getpid(),
        }
    )
    rc = 0
    try:
        await serve(emu, link, stop, ns.heartbeat_hz, faults, events=not ns.no_events)
    except TransportError as exc:
        print(f"launcher_emulator: {exc}", file=sys.stderr)
        rc = 3
    finally:
        await link.close()
        _emit(
            {
                "event": "stopped",
                "device": "launcher",
                "launcher": ns.launcher,
                "highest_sequence": emu.validator.highest_sequence,
                "verdicts": dict(emu.verdicts),
                **{f"fault_{k}": v for k, v in sorted((faults.counts if faults else {}).items())},
            }
        )
    return rc


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    stop_with_parent()  # a SIGKILLed parent leaves no emulator behind
    try:
        ns, faults = resolve(build_parser().parse_args(argv))
    except HilgwError as exc:
        print(f"launcher_emulator: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(ns, faults))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""CAN transport (gateway/transports/can.py) on python-can's virtual bus, and with a
scripted fake backend for the failures python-can's notifier would hide."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import can
import pytest

from gateway.config import CanTransportConfig, parse_config
from gateway.transports import create_transport
from gateway.transports.can import CAN_ERR_BUSOFF, CanTransport
from hilgw.can import CanFrame
from hilgw.errors import TransportError
from tests.waiting import eventually

_chan = itertools.count()


def cfg(**kw: Any) -> CanTransportConfig:
    base: dict[str, Any] = {
        "kind": "can",
        "interface": "virtual",
        "channel": f"t-{next(_chan)}",
        "poll_s": 0.01,
    }
    base.update(kw)
    return CanTransportConfig(**base)


async def test_virtual_bus_round_trip_classic_and_fd() -> None:
    c = cfg()
    async with CanTransport(c) as a, CanTransport(c) as b:
        frames = [CanFrame(0x300 + i, bytes([i] * 8)) for i in range(5)]
        fd = CanFrame(0x380, bytes(range(64)), is_fd=True)
        ext = CanFrame(0x1ABCDE, b"\x01", is_extended=True)
        await a.send_many([*frames, fd, ext])
        got: list[CanFrame] = []
        while len(got) < 7:
            got += await asyncio.wait_for(b.recv_batch(), 2)
        assert [(g.arbitration_id, g.data, g.is_fd, g.is_extended) for g in got] == [
            (f.arbitration_id, f.data, f.is_fd, f.is_extended) for f in [*frames, fd, ext]
        ]
        assert all(g.timestamp_ns > 0 for g in got)
        assert b.frames_in == 7
        await b.send(CanFrame(0x10, b"\x42"))
        one = await asyncio.wait_for(a.recv(), 2)
        assert one.arbitration_id == 0x10
        assert one.data == b"\x42"


async def test_filters_from_config_reach_the_bus() -> None:
    chan = f"t-{next(_chan)}"
    flt = [{"can_id": 0x500, "can_mask": 0x7F0}]
    async with CanTransport(cfg(channel=chan)) as tx, CanTransport(cfg(channel=chan, filters=flt)) as rx:
        await tx.send_many([CanFrame(0x300, b"x"), CanFrame(0x501, b"y"), CanFrame(0x520, b"z")])
        got = await asyncio.wait_for(rx.recv_batch(), 2)
        await asyncio.sleep(0.05)
        got += [f async for f in _drain(rx)]
        assert [f.arbitration_id for f in got] == [0x501]


async def _drain(t: CanTransport) -> Any:
    while t._queue:
        yield await t.recv()


class ScriptedBus(can.BusABC):
    """A backend that plays a script: messages, then exceptions or states."""

    def __init__(self, channel: Any = None, script: list[Any] | None = None, **kw: Any) -> None:
        super().__init__(channel=channel, **kw)
        self.script = list(script or [])
        self.sent: list[can.Message] = []
        self._state = can.BusState.ACTIVE
        self.shut = 0

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if not self.script:
            return None, False
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, can.BusState):
            self._state = item
            return None, False
        return item, False

    @property
    def state(self) -> can.BusState:
        return self._state

    @state.setter
    def state(self, new_state: can.BusState) -> None:
        self._state = new_state

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self.sent.append(msg)

    def shutdown(self) -> None:
        self.shut += 1
        super().shutdown()


def scripted(script: list[Any]) -> tuple[CanTransport, list[ScriptedBus]]:
    made: list[ScriptedBus] = []

    def factory(**kw: Any) -> ScriptedBus:
        bus = ScriptedBus(channel=kw.get("channel"), script=script)
        made.append(bus)
        return bus

    return CanTransport(cfg(interface="fake"), bus_factory=factory), made


async def test_backend_exception_surfaces_after_buffered_frames() -> None:
    msg = can.Message(arbitration_id=0x300, data=bytes(8), is_extended_id=False)
    t, _ = scripted([msg, msg, can.CanOperationError("adapter unplugged")])
    async with t:
        got: list[CanFrame] = []
        failure: TransportError | None = None
        while failure is None:
            try:
                got += await asyncio.wait_for(t.recv_batch(), 2)
            except TransportError as exc:
                failure = exc
        assert "adapter unplugged" in str(failure)
        assert len(got) == 2


async def test_error_frames_are_counted_and_bus_off_fails_the_transport() -> None:
    err = can.Message(arbitration_id=0x04, is_error_frame=True, data=bytes(8))
    off = can.Message(arbitration_id=CAN_ERR_BUSOFF, is_error_frame=True, data=bytes(8))
    t, buses = scripted([err, err, off])
    async with t:
        with pytest.raises(TransportError, match="bus-off"):
            await asyncio.wait_for(t.recv_batch(), 2)
        assert t.counters["error_frame"] == 3
        assert t.counters["bus_off"] == 1
    assert buses[0].shut == 1


async def test_bus_state_error_is_bus_off() -> None:
    t, _ = scripted([can.BusState.ERROR])
    async with t:
        with pytest.raises(TransportError, match="bus-off"):
            await asyncio.wait_for(t.recv(), 2)


async def test_full_buffer_drops_and_counts() -> None:
    msg = can.Message(arbitration_id=0x300, data=bytes(8), is_extended_id=False)
    t, _ = scripted([msg] * 40)
    t.config = cfg(interface="fake", queue_size=16)
    async with t:
        await eventually(lambda: t.counters["queue_full"] == 24, what="the reader through all 40 frames")
        got = await t.recv_batch()
        assert len(got) == 16


async def test_send_goes_to_the_backend_and_close_is_idempotent() -> None:
    t, buses = scripted([])
    await t.open()
    await t.send(CanFrame(0x501, bytes(64), is_fd=True))
    assert buses[0].sent[0].is_fd
    assert buses[0].sent[0].arbitration_id == 0x501
    await t.close()
    await t.close()
    with pytest.raises(TransportError):
        await t.recv()
    with pytest.raises(TransportError):
        await t.send(CanFrame(1, b""))


async def test_open_failure_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="cannot open"):
        await CanTransport(cfg(interface="no-such-interface")).open()


def test_registry_and_config() -> None:
    t = create_transport(cfg())
    assert isinstance(t, CanTransport)
    kw = CanTransport(cfg(bitrate=500_000, fd=True, data_bitrate=2_000_000, options={"x": 1})).bus_kwargs()
    assert kw["bitrate"] == 500_000
    assert kw["fd"] is True
    assert kw["data_bitrate"] == 2_000_000
    assert kw["x"] == 1
    # False is passed too: udp_multicast defaults to FD and would hand a classic device FD frames.
    assert CanTransport(cfg()).bus_kwargs()["fd"] is False
    conf = parse_config(
        {
            "devices": [
                {
                    "id": "can-radar",
                    "protocol": "can_radar",
                    "transport": {
                        "kind": "can",
                        "interface": "socketcan",
                        "channel": "can0",
                        "bitrate": 500000,
                    },
                    "site": {"lat_deg": 1.0, "lon_deg": 2.0, "alt_m": 3.0},
                },
                {
                    "id": "launcher-1",
                    "protocol": "launcher",
                    "transport": {"kind": "can", "interface": "virtual", "channel": "x", "fd": True},
                    "launcher_id": 3,
                    "cue_key_id": 7,
                    "cue_keys": {"7": "hex:" + "00" * 32},
                },
            ]
        }
    )
    assert conf.devices[1].cue_keys == {7: "hex:" + "00" * 32}


@pytest.mark.skipif(sys.platform != "linux", reason="IP_MULTICAST_ALL is Linux's (ip(7))")
def test_a_udp_multicast_socket_is_kept_to_its_own_groups() -> None:
    """isolate_multicast clears IP_MULTICAST_ALL on the bus's own socket (it defaults to 1)."""
    import socket

    from gateway.transports.can import isolate_multicast

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert sock.getsockopt(socket.IPPROTO_IP, 49) == 1

        class Bus:
            def fileno(self) -> int:
                return sock.fileno()

        isolate_multicast(Bus())  # type: ignore[arg-type]
        assert sock.getsockopt(socket.IPPROTO_IP, 49) == 0
        sock.getsockname()  # still open: only a duplicate handle was closed


class _UdpBus(can.BusABC):
    """A bus on a plain UDP socket (127.0.0.1) whose reads wait for ``gate``: the
    reader thread held off while the sender overflows the socket's tiny buffer."""

    def __init__(self, sock: Any, gate: Any, **kw: Any) -> None:
        self.sock, self.gate = sock, gate
        super().__init__(channel="udp", **kw)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        import select

        if not self.gate.wait(timeout):
            return None, False
        if not select.select([self.sock], [], [], timeout)[0]:
            return None, False
        data = self.sock.recv(64)
        return can.Message(arbitration_id=0x300, data=data, is_extended_id=False), False

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        raise NotImplementedError


@pytest.mark.skipif(sys.platform != "linux", reason="SO_MEMINFO is Linux's (socket(7), sock_diag.h)")
async def test_frames_the_kernel_dropped_are_counted() -> None:
    """Issue 14/18: a reader held off while frames arrive at a full socket buffer;
    every frame sent is either received or counted as ``kernel_overflow``."""
    import socket
    import threading

    sent = 300
    gate = threading.Event()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum: a few datagrams
        sock.bind(("127.0.0.1", 0))
        # recv_buffer_bytes 0: the tiny buffer stays (the transport would ask for 4 MiB).
        t = CanTransport(
            cfg(interface="fake", recv_buffer_bytes=0), bus_factory=lambda **kw: _UdpBus(sock, gate)
        )
        async with t:
            for k in range(sent):
                tx.sendto(k.to_bytes(8, "little"), sock.getsockname())
            gate.set()
            got: list[CanFrame] = []
            # recv_batch also returns (empty) for a count alone: the sender is done,
            # no frame follows the drops, and the driver must still see them now.
            while len(got) + t.counters["kernel_overflow"] < sent:
                got += await asyncio.wait_for(t.recv_batch(), 20.0)  # bound: only against a hang
        assert t.counters["kernel_overflow"] > 0
        assert 0 < len(got) < sent
        assert [int.from_bytes(f.data, "little") for f in got] == sorted(
            {int.from_bytes(f.data, "little") for f in got}
        )


RMEM_MAX = int(Path("/proc/sys/net/core/rmem_max").read_text()) if sys.platform == "linux" else 0


@pytest.mark.skipif(sys.platform != "linux", reason="SO_RCVBUF doubling and rmem_max are Linux's (socket(7))")
@pytest.mark.parametrize("asked", [0, 262144, 1 << 30])
async def test_the_bus_socket_gets_the_receive_buffer_asked_for_read_back(
    asked: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 18: python-can leaves a udp_multicast bus at the OS default (~208 kB,
    166 CAN FD frames: 30 ms at 5,600 frames/s), which overflowed whenever the
    reader thread waited that long for the GIL. The transport asks for
    ``recv_buffer_bytes``, reads back what the kernel gave, and warns when
    ``net.core.rmem_max`` capped it."""
    import logging
    import socket
    import threading

    rmem_max = RMEM_MAX
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        t = CanTransport(
            cfg(interface="fake", recv_buffer_bytes=asked),
            bus_factory=lambda **kw: _UdpBus(sock, threading.Event()),
        )
        with caplog.at_level(logging.INFO, logger="gateway.transports.sockdrops"):
            async with t:
                got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if asked == 0:
            assert t.recv_buffer == 0  # left as it is
            assert got == default
            return
        assert t.recv_buffer == got == 2 * min(asked, rmem_max)  # Linux reports twice the grant
        capped = [r for r in caplog.records if r.levelno == logging.WARNING and "rmem_max" in r.getMessage()]
        assert bool(capped) == (asked > rmem_max)

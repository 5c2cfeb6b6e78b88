"""``hilgw doctor``: every check against real things on this machine (ptys,
UDP sockets on 127.0.0.1, python-can's virtual bus, a fake SNTP server on
127.0.0.1, mosquitto with the deploy/ TLS config) and the table/exit code."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from rich.console import Console

from gateway import doctor
from gateway.cli import main as cli_main
from gateway.config import (
    CanTransportConfig,
    MqttConfig,
    SerialTransportConfig,
    TimeSyncConfig,
    UdpTransportConfig,
    load_config,
    parse_config,
)
from gateway.doctor import Check, Result, check_can, check_clock, check_mqtt, check_serial, check_udp
from tests.conftest import Mosquitto, free_port
from tests.e2e.test_broker_tls import GATEWAY_CN, GATEWAY_ID, Pki, make_pki, start_tls_broker, tls_for

# --- serial -----------------------------------------------------------------------


@pytest.fixture
def pty_path() -> Iterator[str]:
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(slave)
    os.close(master)


def serial_cfg(url: str, **kw: object) -> SerialTransportConfig:
    return SerialTransportConfig.model_validate({"kind": "serial", "url": url, **kw})


def test_serial_port_that_opens_passes(pty_path: str) -> None:
    c = check_serial("radar", serial_cfg(pty_path, baudrate=115200, parity="E", stopbits=2))
    assert c.result is Result.PASS, c
    assert "115200 8E2" in c.detail


def test_missing_serial_device_points_to_udev(tmp_path: Path) -> None:
    c = check_serial("radar", serial_cfg(str(tmp_path / "hilgw-radar")))
    assert c.result is Result.FAIL
    assert c.detail == "no such device"
    assert "99-hilgw-serial.rules" in c.fix


def test_busy_serial_port_names_the_holder_command(pty_path: str) -> None:
    holder = serial.Serial(pty_path, exclusive=True)
    try:
        c = check_serial("radar", serial_cfg(pty_path))
    finally:
        holder.close()
    assert c.result is Result.FAIL
    assert "fuser" in c.fix


def test_serial_over_tcp_with_nothing_listening_fails() -> None:
    c = check_serial("radar", serial_cfg(f"socket://127.0.0.1:{free_port()}"))
    assert c.result is Result.FAIL
    assert "refused" in c.detail.lower()
    assert "converter" in c.fix


# --- UDP ------------------------------------------------------------------------


def udp_cfg(**kw: object) -> UdpTransportConfig:
    return UdpTransportConfig.model_validate({"kind": "udp", **kw})


def test_udp_free_port_passes_and_taken_port_fails() -> None:
    port = free_port()
    assert check_udp("feed", udp_cfg(bind_port=port)).result is Result.PASS
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        c = check_udp("feed", udp_cfg(bind_port=port))
    assert c.result is Result.FAIL
    assert f"sport = :{port}" in c.fix


def test_udp_bind_address_not_on_this_machine_fails() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never local; bind only, nothing is sent.
    c = check_udp("feed", udp_cfg(bind_host="192.0.2.1", bind_port=free_port()))
    assert c.result is Result.FAIL
    assert "ip -br addr" in c.fix


# --- CAN ------------------------------------------------------------------------


def can_cfg(**kw: object) -> CanTransportConfig:
    return CanTransportConfig.model_validate({"kind": "can", **kw})


def test_can_virtual_interface_opens() -> None:
    c = check_can("radar-can", can_cfg(interface="virtual", channel="doctor-test", bitrate=500000))
    assert c.result is Result.PASS, c


def test_can_unknown_interface_lists_the_valid_ones() -> None:
    c = check_can("radar-can", can_cfg(interface="socketcann", channel="can0"))
    assert c.result is Result.FAIL
    assert "socketcan" in c.fix
    assert "virtual" in c.fix


def test_missing_socketcan_interface_gives_the_ip_link_line() -> None:
    c = check_can("radar-can", can_cfg(interface="socketcan", channel="hilgwcan9", bitrate=250000, fd=True))
    assert c.result is Result.FAIL
    assert c.detail == "no such network interface"
    assert "ip link set hilgwcan9 up type can bitrate 250000 dbitrate 2000000 fd on restart-ms 100" in c.fix


def test_can_device_in_a_config_is_checked() -> None:
    site = {"lat_deg": 57.0, "lon_deg": 9.0, "alt_m": 10.0}
    transport = {"kind": "can", "interface": "virtual", "channel": "doctor-cfg"}
    cfg = parse_config(
        {
            "mqtt": {"enabled": False},
            "devices": [{"id": "rc", "protocol": "can_radar", "transport": transport, "site": site}],
        }
    )
    [can_check, mqtt_check] = doctor.run_checks(cfg)
    assert can_check.name == "can rc (virtual:doctor-cfg)"
    assert can_check.result is Result.PASS
    assert mqtt_check.result is Result.SKIP


# --- clock ------------------------------------------------------------------------

NTP_EPOCH = 2_208_988_800


class FakeSntp:
    """An SNTP server on 127.0.0.1 whose clock is ``skew_s`` ahead of ours."""

    def __init__(self, skew_s: float = 0.0, stratum: int = 2, echo_origin: bool = True) -> None:
        self.skew_s, self.stratum, self.echo_origin = skew_s, stratum, echo_origin
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _ts(self) -> bytes:
        t = time.time() + self.skew_s + NTP_EPOCH
        return struct.pack("!II", int(t), int((t % 1) * 2**32))

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                req, addr = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            t2 = self._ts()
            origin = req[40:48] if self.echo_origin else bytes(8)
            head = bytes([0x24, self.stratum, 6, 0xEC]) + bytes(20)  # LI 0, VN 4, mode 4 (server)
            self.sock.sendto(head + origin + t2 + self._ts(), addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def ntp_cfg(port: int, limit_ms: float = 50.0) -> TimeSyncConfig:
    return TimeSyncConfig(method="ntp", server="127.0.0.1", port=port, max_offset_ms=limit_ms, timeout_s=0.5)


@pytest.mark.parametrize(
    ("skew_s", "expected"), [(0.0, Result.PASS), (0.4, Result.FAIL), (-0.4, Result.FAIL)]
)
def test_sntp_offset_against_limit(skew_s: float, expected: Result) -> None:
    server = FakeSntp(skew_s)
    try:
        offset = doctor.sntp_offset_s("127.0.0.1", server.port, 1.0)
        c = check_clock(ntp_cfg(server.port))
    finally:
        server.close()
    assert offset == pytest.approx(skew_s, abs=0.02)
    assert c.result is expected, c
    if expected is Result.FAIL:
        assert "chrony" in c.fix


@pytest.mark.parametrize(
    ("server_kw", "why"),
    [({"stratum": 0}, "not synchronised"), ({"echo_origin": False}, "not an answer to this request")],
)
def test_sntp_rejects_unusable_replies(server_kw: dict[str, object], why: str) -> None:
    server = FakeSntp(**server_kw)  # type: ignore[arg-type]
    try:
        c = check_clock(ntp_cfg(server.port))
    finally:
        server.close()
    assert c.result is Result.FAIL
    assert why in c.detail


def test_sntp_no_answer_fails_with_firewall_hint() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        c = check_clock(ntp_cfg(int(silent.getsockname()[1])))
    assert c.result is Result.FAIL
    assert "firewall" in c.fix


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ((True, 0.002, 0.020), Result.PASS),
        ((True, 0.200, 0.400), Result.FAIL),  # synchronised, but worse than the limit
        ((False, 16.0, 16.0), Result.FAIL),
    ],
)
def test_kernel_clock_state_is_judged(state: tuple[bool, float, float], expected: Result) -> None:
    c = check_clock(TimeSyncConfig(method="kernel", max_offset_ms=50), kernel=lambda: state)
    assert c.result is expected, c


def test_kernel_clock_state_reads_on_linux() -> None:
    synced, est, mx = doctor.kernel_clock_state()
    assert isinstance(synced, bool)
    assert 0 <= est <= mx or not synced  # the kernel keeps esterror <= maxerror once synchronised


# --- MQTT -------------------------------------------------------------------------


def test_connect_packet_bytes() -> None:
    # MQTT 3.1.1 §3.1: fixed header 0x10, remaining length 13, "MQTT", level 4,
    # flags 0x02 (clean session), keep alive 10 s, client id "a".
    assert doctor._connect_packet("a", None, None) == bytes.fromhex("100d00044d5154540402000a000161")
    long_packet = doctor._connect_packet("x" * 200, "u", "p")
    # 10 (variable header) + 202 + 3 + 3 = 218 -> two length bytes (§2.2.3)
    assert long_packet[1:3] == bytes([(218 % 128) | 0x80, 218 // 128])
    assert long_packet[9:11] == bytes([4, 0xC2])  # level 4; user name + password + clean session


@pytest.mark.e2e
def test_plain_broker_probe(mosquitto: Mosquitto) -> None:
    [c] = check_mqtt(MqttConfig(port=mosquitto.port), "gw")
    assert c.result is Result.PASS, c
    mosquitto.stop()
    [c] = check_mqtt(MqttConfig(port=mosquitto.port), "gw", timeout_s=1)
    assert c.result is Result.FAIL
    assert "refused" in c.detail.lower()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = start_tls_broker(tmp_path_factory.mktemp("broker"), pki)
    yield b
    b.stop()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name.split(" 127.0.0.1")[0]: c for c in checks}


@pytest.mark.e2e
def test_tls_identity_accepted(pki: Pki, tls_broker: Mosquitto) -> None:
    checks = by_name(check_mqtt(MqttConfig(port=tls_broker.port, tls=tls_for(pki, GATEWAY_CN)), GATEWAY_ID))
    assert checks["mqtt broker"].result is Result.PASS, checks
    assert "TLSv1.3" in checks["mqtt broker"].detail
    assert checks["mqtt client certificate"].result is Result.PASS
    assert "CN=hilgw-field-1" in checks["mqtt client certificate"].detail


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("who", "ca", "alert", "fix"),
    [
        (None, None, "alert: certificate required", "cert_file"),
        ("expired", None, "alert: certificate expired", "expired"),
        ("other-ca", None, "alert: unknown ca", "signed by its cafile"),
        (GATEWAY_CN, "other", "certificate verify failed", "mqtt.tls.ca_file"),
    ],
)
def test_tls_refusals_are_named(
    pki: Pki, tls_broker: Mosquitto, who: str | None, ca: str | None, alert: str, fix: str
) -> None:
    tls = tls_for(pki, who, ca=pki.other_ca if ca else None)
    checks = by_name(check_mqtt(MqttConfig(port=tls_broker.port, tls=tls), GATEWAY_ID))
    broker = checks["mqtt broker"]
    assert broker.result is Result.FAIL
    assert alert in broker.detail.lower(), broker
    assert fix in broker.fix
    if who == "expired":  # also caught locally, before the broker says so
        assert checks["mqtt client certificate"].result is Result.FAIL


def test_missing_tls_file_is_reported_before_connecting(pki: Pki, tmp_path: Path) -> None:
    tls = tls_for(pki, GATEWAY_CN).model_copy(update={"key_file": tmp_path / "nope.key"})
    [c] = check_mqtt(MqttConfig(port=free_port(), tls=tls), GATEWAY_ID)
    assert c.name == "mqtt tls key_file"
    assert c.result is Result.FAIL
    assert "missing" in c.detail


# --- the command ------------------------------------------------------------------


def test_table_keeps_toml_brackets_in_fixes() -> None:
    checks = doctor.run_checks(parse_config({"mqtt": {"broker": "embedded"}}))
    out = Console(width=200, record=True)
    out.print(doctor.render(checks))
    assert "add [[devices]] blocks" in out.export_text()


def test_deploy_examples_load() -> None:
    for name in ("lab", "bench", "field"):
        cfg = load_config(Path(__file__).resolve().parents[2] / "deploy" / "examples" / f"{name}.toml")
        assert cfg.mqtt.enabled
    assert cfg.mqtt.tls is not None  # field.toml: TLS with a client certificate
    assert cfg.mqtt.tls.cert_file is not None
    assert cfg.time_sync is not None


def test_emulated_bench_config_needs_nothing(tmp_path: Path) -> None:
    cfg = parse_config({"mqtt": {"broker": "embedded"}, "emulation": {}})
    checks = doctor.run_checks(cfg)
    assert [c.result for c in checks] == [Result.SKIP, Result.SKIP]
    assert doctor.exit_code(checks) == 0


def test_cli_prints_table_and_fails_on_a_missing_port(
    tmp_path: Path, pty_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site = "[devices.site]\nlat_deg = 57.0\nlon_deg = 9.0\nalt_m = 10.0\n"
    toml = tmp_path / "field.toml"
    toml.write_text(
        '[mqtt]\nbroker = "embedded"\n'
        '[[devices]]\nid = "good"\nprotocol = "serial_radar"\n'
        f'[devices.transport]\nkind = "serial"\nurl = "{pty_path}"\n{site}'
        '[[devices]]\nid = "gone"\nprotocol = "serial_radar"\n'
        f'[devices.transport]\nkind = "serial"\nurl = "{tmp_path / "ttyGONE"}"\n{site}'
    )
    assert cli_main(["doctor", "--config", str(toml)]) == 1
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│ serial")}
    assert "pass" in next(v for k, v in rows.items() if k.startswith("serial good"))
    assert "FAIL" in next(v for k, v in rows.items() if k.startswith("serial gone"))
    assert "1 check(s) failed" in out

"""``hilgw doctor --config FILE``: check a field config without starting the gateway.

Each check returns a :class:`Check` (PASS / WARN / FAIL / SKIP, what was found,
and for anything not passed the fix). Nothing here runs for long: every probe
has a timeout, nothing is written to a device, and the broker probe uses its
own client id so it cannot knock a running gateway off the broker.

What is checked:

* serial devices: the device node exists, is readable and writable by this
  user, and opens at the configured baud rate, size, parity, stop bits and
  flow control (pyserial); ``socket://`` URLs are connected to;
* UDP devices: the bind address and port can be bound;
* CAN devices: the python-can interface opens (``can.Bus(interface=...,
  channel=...)``); for socketcan the link state is read from sysfs first so a
  down interface gets the ``ip link`` line that brings it up;
* the MQTT broker: TCP, then TLS with the configured identity (the broker is
  verified against ``ca_file``), then an MQTT CONNECT/CONNACK;
* ``[nats]``: its TLS files and credentials, then a connect to each server
  (gateway/doctor_nats.py);
* the cue keys file, when ``[cue]`` is on: owner, mode, symbolic link and
  directory (:mod:`gateway.cue.keyfile`), then its content;
* clock sync, when ``[time_sync]`` is configured: the kernel's clock
  discipline state (adjtimex) or an SNTP query (RFC 4330).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import ssl
import struct
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway.config import (
    CanTransportConfig,
    DeviceConfig,
    GatewayConfig,
    MqttConfig,
    SerialTransportConfig,
    UdpTransportConfig,
)
from gateway.doctor_checks import Check, Result
from gateway.doctor_clock import check_clock, kernel_clock_state, sntp_offset_s
from gateway.outputs.mqtt import tls_context

__all__ = [
    "Check",
    "Result",
    "check_can",
    "check_clock",
    "check_keys_file",
    "check_mqtt",
    "check_serial",
    "check_udp",
    "exit_code",
    "kernel_clock_state",
    "render",
    "run_checks",
    "sntp_offset_s",
]


def _udev_fix(path: str) -> str:
    return (
        f"plug the adapter in and check `ls -l /dev/serial/by-id/`; if {path} is a udev name, "
        "install deploy/udev/99-hilgw-serial.rules with this adapter's serial number and run "
        "`udevadm control --reload && udevadm trigger`"
    )


# --- serial -------------------------------------------------------------------


def check_serial(device_id: str, t: SerialTransportConfig, timeout_s: float = 2.0) -> Check:
    """The port exists, is accessible and opens at the configured settings."""
    import serial  # pyserial: imported here so `doctor` on a CAN-only site needs no port

    name = f"serial {device_id} ({t.url})"
    is_path = "://" not in t.url
    if is_path:
        if not os.path.exists(t.url):
            return Check(name, Result.FAIL, "no such device", _udev_fix(t.url))
        if not os.access(t.url, os.R_OK | os.W_OK):
            return Check(
                name,
                Result.FAIL,
                "permission denied for this user",
                "add the service user to the group that owns the port (`usermod -aG dialout hilgw`, "
                "then log in again / restart the unit); the systemd unit does this with "
                "SupplementaryGroups=dialout",
            )
    settings = f"{t.baudrate} {t.bytesize}{t.parity}{t.stopbits}{' rtscts' if t.rtscts else ''}"
    try:
        port = serial.serial_for_url(
            t.url,
            baudrate=t.baudrate,
            bytesize=t.bytesize,
            parity=t.parity,
            stopbits=t.stopbits,
            rtscts=t.rtscts,
            timeout=0,
            write_timeout=timeout_s,
            exclusive=True if is_path else None,
        )
    except ValueError as exc:
        return Check(name, Result.FAIL, f"setting refused: {exc}", "use settings the adapter supports")
    except (OSError, serial.SerialException) as exc:
        text = str(exc)
        busy = getattr(exc, "errno", None) in (errno.EBUSY, errno.EAGAIN) or "lock" in text.lower()
        if busy:
            fix = (
                f"another process has the port: `fuser -v {t.url}`; stop it (a running hilgw, "
                "ModemManager, a serial-getty)"
            )
        elif not is_path:
            fix = "check the serial-to-Ethernet converter's address, port and that it is powered"
        else:
            fix = "check the adapter and its driver (`dmesg | tail`)"
        return Check(name, Result.FAIL, f"cannot open at {settings}: {text}", fix)
    port.close()
    return Check(name, Result.PASS, f"opens at {settings}")


# --- UDP ----------------------------------------------------------------------


def check_udp(device_id: str, t: UdpTransportConfig) -> Check:
    """The bind address belongs to this machine and the port is free."""
    name = f"udp {device_id} ({t.bind_host}:{t.bind_port})"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("" if t.group else t.bind_host, t.bind_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fix = f"another process has the port: `ss -ulpn 'sport = :{t.bind_port}'`"
            else:
                fix = "bind_host must be an address of this machine (`ip -br addr`)"
            return Check(name, Result.FAIL, f"cannot bind: {exc.strerror}", fix)
    joined = f", group {t.group} via {t.interface} (not joined by doctor)" if t.group else ""
    return Check(name, Result.PASS, f"port free{joined}")


# --- CAN ----------------------------------------------------------------------


def _link_state(channel: str) -> str | None:
    """operstate of a network interface from sysfs, None when there is none."""
    try:
        return Path(f"/sys/class/net/{channel}/operstate").read_text().strip()
    except OSError:
        return None


def check_can(device_id: str, t: CanTransportConfig) -> Check:
    """The python-can bus opens with exactly the gateway's ``can.Bus`` arguments
    (:meth:`CanTransport.bus_kwargs`), and, for socketcan, the link is up:
    python-can opens a down interface without complaint."""
    import can  # python-can: imported here so a serial-only site never loads it

    from gateway.transports.can import CanTransport

    name = f"can {device_id} ({t.interface}:{t.channel})"
    channel = str(t.channel) if t.channel is not None else "can0"
    fd = f" dbitrate {t.data_bitrate or 2000000} fd on" if t.fd else ""
    up_cmd = (
        f"`ip link set {channel} up type can bitrate {t.bitrate or 500000}{fd} restart-ms 100` "
        "(docs/deploy.md, SocketCAN)"
    )
    if t.interface == "socketcan":
        state = _link_state(channel)
        if state is None:
            return Check(
                name, Result.FAIL, "no such network interface", f"load the adapter's driver, then {up_cmd}"
            )
        if state == "down":
            return Check(name, Result.FAIL, "interface is down", up_cmd)
    try:
        bus = can.Bus(**CanTransport(t).bus_kwargs())
    except (can.CanError, OSError, ValueError, ImportError, NotImplementedError, TypeError) as exc:
        if t.interface not in can.VALID_INTERFACES:
            fix = f"interface must be a python-can interface name ({', '.join(sorted(can.VALID_INTERFACES))})"
        elif isinstance(exc, ImportError | NotImplementedError):
            fix = "install the vendor driver / Python package this python-can interface needs"
        elif isinstance(exc, TypeError):
            fix = "an option this interface does not take: check transport.options"
        elif t.interface == "socketcan":
            fix = up_cmd
        else:
            fix = "check the adapter, its driver and the channel name"
        return Check(name, Result.FAIL, f"cannot open: {exc}", fix)
    try:
        state_text = str(getattr(bus, "state", "")).removeprefix("BusState.")
    finally:
        bus.shutdown()
    return Check(name, Result.PASS, f"opens{f' (state {state_text})' if state_text else ''}")


def _device_checks(dev: DeviceConfig) -> Check:
    t = dev.transport
    if isinstance(t, SerialTransportConfig):
        return check_serial(dev.id, t)
    if isinstance(t, UdpTransportConfig):
        return check_udp(dev.id, t)
    if isinstance(t, CanTransportConfig):
        return check_can(dev.id, t)
    what = "in-process transport" if t.kind == "memory" else "a plug-in transport"
    return Check(f"{t.kind} {dev.id}", Result.SKIP, f"{what}: nothing to check")


# --- MQTT broker ----------------------------------------------------------------

# A hand-built MQTT 3.1.1 CONNECT (§3.1) and CONNACK (§3.2) exchange, not
# aiomqtt: when the broker drops the link before CONNACK (a refused client
# certificate under TLS 1.3 does that), paho/aiomqtt report only a timeout,
# while the TLS alert read here names the cause (expired, unknown CA, ...).
_CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session: the probe leaves no state on the broker
    payload = _mqtt_str(client_id)
    if username is not None:
        flags |= 0x80
        payload += _mqtt_str(username)
        if password is not None:
            flags |= 0x40
            payload += _mqtt_str(password)
    body = _mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + payload
    n, length = len(body), b""
    while True:  # remaining length: base-128 varint (§2.2.3)
        n, digit = n // 128, n % 128
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return b"\x10" + length + body


def _recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection before CONNACK")
        data += chunk
    return data


def _tls_fix(text: str, mqtt: MqttConfig) -> str:
    t = text.lower()
    tls = mqtt.tls
    if "expired" in t:
        return "the client certificate has expired: issue a new one from the site CA (docs/deploy.md)"
    if "unknown ca" in t or "bad certificate" in t:
        return "the broker does not trust the client certificate's issuer: use one signed by its cafile"
    if "certificate required" in t or "handshake failure" in t:
        return "the broker requires a client certificate: set mqtt.tls.cert_file and key_file"
    if "hostname" in t or "ip address mismatch" in t:
        return (
            f"the broker certificate does not name {mqtt.host!r}: connect by a name in its SAN, "
            "re-issue it with this name, or (last resort) mqtt.tls.verify_hostname = false"
        )
    if "verify failed" in t:
        ca = tls.ca_file if tls else "?"
        return f"the broker certificate is not signed by {ca}: point mqtt.tls.ca_file at the site CA"
    if "eof" in t or "closed the connection" in t:
        return (
            "the broker dropped the connection after the handshake: usually a refused client "
            "certificate (expired, other CA, none); see the broker log"
        )
    if "wrong version" in t or "record layer" in t:
        return "the port does not speak TLS: use the broker's TLS listener (8883)"
    return "see the broker log (`journalctl -u mosquitto`)"


def check_mqtt(mqtt: MqttConfig, gateway_id: str, timeout_s: float = 3.0) -> list[Check]:
    """TLS files, then TCP, TLS with the configured identity, MQTT CONNECT."""
    if not mqtt.enabled:
        return [Check("mqtt", Result.SKIP, "mqtt.enabled = false")]
    if mqtt.broker == "embedded":
        return [Check("mqtt", Result.SKIP, "embedded broker: the gateway starts it")]
    where = f"{mqtt.host}:{mqtt.port}"
    checks: list[Check] = []
    ctx: ssl.SSLContext | None = None
    if mqtt.tls is not None:
        tls = mqtt.tls
        files = [("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file)]
        for key, path in files:
            if path is not None and not os.access(path, os.R_OK):
                why = "missing" if not os.path.exists(path) else "not readable by this user"
                fix = f"install it, or fix mqtt.tls.{key} (absolute paths: the unit runs in /var/lib/hilgw)"
                checks.append(Check(f"mqtt tls {key}", Result.FAIL, f"{path}: {why}", fix))
        if checks:
            return checks
        try:
            ctx = tls_context(tls)
        except OSError as exc:  # ssl.SSLError included
            fix = "cert_file/key_file must be a matching PEM pair (and key_password right, if set)"
            return [Check("mqtt tls files", Result.FAIL, str(exc), fix)]
        checks.append(_cert_expiry(tls.cert_file))
    elif not _is_loopback(mqtt.host):
        checks.append(
            Check(
                "mqtt tls",
                Result.WARN,
                f"plain TCP to {mqtt.host}",
                "add [mqtt.tls] (deploy/examples/field.toml)",
            )
        )
    name = f"mqtt broker {where}" + (" (tls)" if ctx else "")
    checks.append(_probe_broker(name, mqtt, ctx, gateway_id, timeout_s))
    return [c for c in checks if c.result is not Result.SKIP or c.detail]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _cert_expiry(cert_file: Path | None) -> Check:
    """Days left on the client certificate (needs `cryptography`; skipped without)."""
    name = "mqtt client certificate"
    if cert_file is None:
        return Check(name, Result.SKIP, "")
    try:
        from cryptography import x509
    except ImportError:
        return Check(name, Result.SKIP, "")
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        return Check(name, Result.WARN, f"cannot read expiry: {exc}")
    left_s = cert.not_valid_after_utc.timestamp() - time.time()
    subject = cert.subject.rfc4514_string()
    if left_s < 0:
        fix = "issue a new certificate from the site CA (docs/deploy.md)"
        return Check(name, Result.FAIL, f"{subject}: expired {-left_s / 86400:.0f} days ago", fix)
    if left_s < 30 * 86400:
        fix = "renew it soon; the gateway picks up the new file at its next reconnect"
        return Check(name, Result.WARN, f"{subject}: expires in {left_s / 86400:.0f} days", fix)
    return Check(name, Result.PASS, f"{subject}: valid for {left_s / 86400:.0f} more days")


def _await_refusal(s: socket.socket, wait_s: float, timeout_s: float) -> None:
    """Under TLS 1.3 the broker judges our certificate after our side of the
    handshake is done; its refusal (an alert, then close) arrives a moment
    later. Read for it now: once CONNECT is sent into the closed connection the
    peer's RST can discard the alert and only "EOF" would be left to report."""
    s.settimeout(wait_s)
    try:
        if s.recv(1) == b"":
            raise ConnectionError("the broker closed the connection after the TLS handshake")
    except TimeoutError:
        pass  # nothing: the broker kept the connection; an MQTT server never speaks first
    finally:
        s.settimeout(timeout_s)


def _probe_broker(
    name: str, mqtt: MqttConfig, ctx: ssl.SSLContext | None, gateway_id: str, timeout_s: float
) -> Check:
    try:
        raw = socket.create_connection((mqtt.host, mqtt.port), timeout=timeout_s)
    except OSError as exc:
        fix = "is the broker running (`systemctl status mosquitto`)? check mqtt.host/port and the firewall"
        return Check(name, Result.FAIL, f"cannot connect: {exc.strerror or exc}", fix)
    stage = "tls handshake"
    try:
        with raw:
            s: socket.socket = raw
            if ctx is not None:
                s = ctx.wrap_socket(raw, server_hostname=mqtt.host)
                stage = "tls client certificate"
                _await_refusal(s, min(timeout_s, 0.5), timeout_s)
            stage = "mqtt connect"
            client_id = f"{mqtt.client_id or f'hilgw-{gateway_id}'}-doctor-{os.getpid()}"
            s.sendall(_connect_packet(client_id, mqtt.username, mqtt.password))
            head = _recv_exact(s, 4)
            if head[0] != 0x20:
                return Check(
                    name, Result.FAIL, f"not an MQTT broker (got 0x{head[0]:02x})", "check mqtt.port"
                )
            if head[3] != 0:
                reason = _CONNACK_CODES.get(head[3], f"code {head[3]}")
                fix = "the broker refused this identity: check the ACL/users (deploy/mosquitto/hilgw.acl)"
                return Check(name, Result.FAIL, f"CONNACK refused: {reason}", fix)
            s.sendall(b"\xe0\x00")  # DISCONNECT (§3.14): a clean goodbye, no last will
            version = s.version() if isinstance(s, ssl.SSLSocket) else None
    except OSError as exc:  # ssl.SSLError and ConnectionError are OSErrors
        if isinstance(exc, TimeoutError):
            return Check(name, Result.FAIL, f"{stage}: no answer in {timeout_s:.0f} s", "check mqtt.port")
        text = str(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            text = f"certificate verify failed: {exc.verify_message}"
        elif isinstance(exc, ssl.SSLError) and exc.reason:
            # "SSLV3_ALERT_CERTIFICATE_EXPIRED" -> "alert: certificate expired"
            alert = exc.reason.lower().replace("_", " ")
            text = "alert: " + alert.split(" alert ", 1)[-1] if " alert " in alert else alert
        return Check(name, Result.FAIL, f"{stage}: {text}", _tls_fix(str(exc), mqtt))
    return Check(name, Result.PASS, f"connected{f' ({version})' if version else ''}, CONNACK accepted")


# --- the whole run ---------------------------------------------------------------


def run_checks(config: GatewayConfig, timeout_s: float = 3.0) -> list[Check]:
    """Every check the config calls for, in table order."""
    checks: list[Check] = []
    for dev in config.devices:
        if not dev.enabled:
            checks.append(Check(f"device {dev.id}", Result.SKIP, "enabled = false"))
            continue
        checks.append(c := _device_checks(dev))
        if dev.protocol == "asterix" and c.result is Result.PASS:
            from gateway.doctor_asterix import check_asterix_sources  # the sources a stream carries

            checks.append(check_asterix_sources(dev, listen_s=min(timeout_s, 2.0)))
    if config.emulation is not None:
        checks.append(
            Check(
                "emulation",
                Result.SKIP,
                f"{config.emulation.scenario}: emulated devices start with the gateway",
            )
        )
    if not config.devices and config.emulation is None:
        checks.append(Check("devices", Result.WARN, "no devices configured", "add [[devices]] blocks"))
    if config.cue is not None and config.cue.enabled:
        checks.append(check_keys_file(config))
    checks.extend(check_mqtt(config.mqtt, config.gateway_id, timeout_s))
    if config.nats is not None:
        from gateway.doctor_nats import check_nats  # nats-py only for a gateway with [nats]

        checks.extend(check_nats(config.nats, timeout_s))
    if config.time_sync is not None:
        checks.append(check_clock(config.time_sync))
    return checks


def check_keys_file(config: GatewayConfig) -> Check:
    """The cue keys file: owner, mode, symlink, directory, then its content."""
    from gateway.cue.keyfile import check_key_file
    from gateway.cue.keys import load_keys
    from hilgw.errors import ConfigError

    assert config.cue is not None
    name = "cue keys file"
    try:
        check_key_file(config.cue.keys_file, allow_symlink=config.cue.keys_file_symlink)
        ring = load_keys(config.cue.keys_file)
    except ConfigError as exc:
        reason, _, fix = exc.reason.partition("; ")
        return Check(name, Result.FAIL, f"{exc.key}: {reason}", fix or "see docs/cue-path.md §7")
    counts = f"{len(ring.operator)} operator key(s)"
    if ring.launcher:  # cues are signed on the wire with the device's cue_keys (docs/cue-path.md §3)
        counts += f", {len(ring.launcher)} [launcher.*] key(s) (unused)"
    own = ring.signing_key()
    if own is None:  # the CLI believes only what this key signs (docs/cue-path.md §3)
        return Check(
            name,
            Result.WARN,
            f"{config.cue.keys_file}: {counts}, no [gateway.<id>] secret: results and state go out unsigned",
            "add [gateway.<id>] secret = <64 hex> (Ed25519 seed); give stations its public key",
        )
    return Check(name, Result.PASS, f"{config.cue.keys_file}: {counts}, gateway key {own.key_id}")


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed, 1 otherwise."""
    return 1 if any(c.result is Result.FAIL for c in checks) else 0


_STYLE = {Result.PASS: "green", Result.WARN: "yellow", Result.FAIL: "bold red", Result.SKIP: "dim"}


def render(checks: list[Check], title: str = "hilgw doctor") -> Table:
    table = Table(title=title, expand=False, show_lines=False)
    for col in ("check", "result", "found", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        # Fixes quote TOML tables ([mqtt.tls], [[devices]]): not rich markup.
        table.add_row(
            escape(c.name), f"[{_STYLE[c.result]}]{c.result.value}[/]", escape(c.detail), escape(c.fix)
        )
    return table


def main(config: GatewayConfig, source: str, console: Console | None = None) -> int:
    """Run the checks, print the table, return the exit code (``hilgw doctor``)."""
    checks = run_checks(config)
    # Piped (a log, a ticket): wide enough that the fixes stay on one line each.
    out = console or (Console() if sys.stdout.isatty() else Console(width=200))
    out.print(render(checks, f"hilgw doctor: {source}"))
    failed = sum(c.result is Result.FAIL for c in checks)
    out.print(f"{failed} check(s) failed" if failed else "all checks passed")
    return exit_code(checks)

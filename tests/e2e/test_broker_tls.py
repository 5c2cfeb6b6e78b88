"""Broker security end to end: mosquitto started with deploy/mosquitto/hilgw.conf
and hilgw.acl (paths and port rewritten) on 127.0.0.1, with a PKI this test
generates. The gateway connects with its certificate and verifies the broker;
clients without a certificate, with an expired one or one from another CA are
refused; the ACL keeps consumers (and operators) off the cue topics and
consumers off the authority command topic.

The PKI helpers are also used by tests/unit/test_doctor.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.config import MqttConfig, MqttTlsConfig
from gateway.outputs.mqtt import Outgoing, tls_context
from gateway.outputs.session import MqttSession
from hilgw.v1 import track_pb2
from tests.conftest import Mosquitto, _spawn, free_port, wait_port
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
GATEWAY_ID = "field-1"  # the ACL in deploy/ is written for this gateway
GATEWAY_CN = "hilgw-field-1"
BASE = f"hilgw/{GATEWAY_ID}"


# --- a throw-away PKI ------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    other_ca: Path
    broker: Identity
    clients: dict[str, Identity]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hilgw test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Identity:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Identity(path.with_suffix(".crt"), path.with_suffix(".key"))


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool = False,
    valid_days: tuple[int, int] = (-1, 365),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_days[0]))
        .not_valid_after(now + dt.timedelta(days=valid_days[1]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        # Python's hostname check matches an IP against IP-address SANs only.
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return b.sign(ca[1], hashes.SHA256()), key


def make_pki(d: Path, extra: tuple[str, ...] = ()) -> Pki:
    """CA, broker (SAN IP 127.0.0.1), gateway/operator/consumer clients (and
    ``extra`` client CNs), an expired gateway certificate and a gateway
    certificate from another CA."""
    d.mkdir(parents=True, exist_ok=True)
    ca, other = _ca("hilgw test CA"), _ca("somebody else's CA")
    _write(d / "ca", *ca)
    _write(d / "other-ca", *other)
    cns = (GATEWAY_CN, "operator-1", "consumer-1", *extra)
    clients = {cn: _write(d / cn, *_leaf(cn, ca)) for cn in cns}
    clients["expired"] = _write(d / "expired", *_leaf(GATEWAY_CN, ca, valid_days=(-30, -1)))
    clients["other-ca"] = _write(d / "rogue", *_leaf(GATEWAY_CN, other))
    broker = _write(d / "broker", *_leaf("broker", ca, server=True))
    return Pki(d, d / "ca.crt", d / "other-ca.crt", broker, clients)


def deploy_conf(port: int, pki: Pki, log_dest: str = "stderr") -> str:
    """deploy/mosquitto/hilgw.conf as shipped, its port and paths rewritten for 127.0.0.1."""
    conf = (DEPLOY / "hilgw.conf").read_text()
    assert "\nlistener 8883\n" in conf
    conf = conf.replace("\nlistener 8883\n", f"\nlistener {port} 127.0.0.1\n")
    conf = conf.replace("/etc/mosquitto/certs/", f"{pki.dir}/")
    conf = conf.replace("/etc/mosquitto/hilgw.acl", str(DEPLOY / "hilgw.acl"))
    settings = [ln for ln in conf.splitlines() if ln and not ln.startswith("#")]
    assert not [ln for ln in settings if "/etc/mosquitto" in ln], "a path the test did not rewrite"
    # As root, mosquitto drops to user "mosquitto", which cannot read the temp
    # dir; `user` is ignored when not root.
    return conf + f"\nuser {getpass.getuser()}\npersistence false\nlog_dest {log_dest}\n"


def start_tls_broker(d: Path, pki: Pki) -> Mosquitto:
    """mosquitto with the deploy/ config and ACL, on a free port on 127.0.0.1."""
    port = free_port()
    conf = deploy_conf(port, pki)
    path = d / f"mosquitto-tls-{port}.conf"
    path.write_text(conf)
    broker = Mosquitto(port, _spawn(path), path)
    try:
        wait_port(port)
    except TimeoutError:
        broker.stop()
        err = broker.proc.stderr.read().decode() if broker.proc.stderr else ""
        pytest.fail(f"mosquitto did not start with {path}: {err}")
    return broker


def tls_for(pki: Pki, who: str | None, ca: Path | None = None, verify_hostname: bool = True) -> MqttTlsConfig:
    ident = pki.clients[who] if who else None
    return MqttTlsConfig(
        ca_file=ca or pki.ca,
        cert_file=ident.cert if ident else None,
        key_file=ident.key if ident else None,
        verify_hostname=verify_hostname,
    )


def paho_tls_client(broker: Mosquitto, tls: MqttTlsConfig, client_id: str) -> object:
    """A started paho client (MQTT 3.1.1) on the TLS broker: publishes as fast
    as paho can (no client-side queue limit) for the flood tests."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.tls_set_context(tls_context(tls))
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def client(
    broker: Mosquitto, tls: MqttTlsConfig, host: str = "127.0.0.1", timeout: float = 5, **kw: object
) -> aiomqtt.Client:
    return aiomqtt.Client(host, broker.port, tls_context=tls_context(tls), timeout=timeout, **kw)  # type: ignore[arg-type]


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = start_tls_broker(tmp_path_factory.mktemp("broker"), pki)
    yield b
    b.stop()


# --- tests ----------------------------------------------------------------------------


async def test_gateway_publishes_over_tls_with_its_certificate(pki: Pki, broker: Mosquitto) -> None:
    cfg = MqttConfig(port=broker.port, tls=tls_for(pki, GATEWAY_CN), reconnect_initial_s=0.1)
    pub = MqttSession(cfg, GATEWAY_ID)
    task = asyncio.create_task(pub.run())
    try:
        async with client(broker, tls_for(pki, "consumer-1")) as consumer:
            await consumer.subscribe(pub.topics.tracks, qos=1)
            await eventually(lambda: pub.connected)
            batch = track_pb2.TrackBatch(gateway_id=GATEWAY_ID, batch_sequence=7)
            pub.enqueue(Outgoing(pub.topics.tracks, batch.SerializeToString(), qos=1, kind="tracks"))
            async with asyncio.timeout(5):
                msg = await anext(consumer.messages)
        assert track_pb2.TrackBatch.FromString(bytes(msg.payload)).batch_sequence == 7
        assert pub.connects == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("who", [None, "expired", "other-ca"])
async def test_broker_refuses_client_without_valid_certificate(
    pki: Pki, broker: Mosquitto, who: str | None
) -> None:
    # Under TLS 1.3 the server checks the client certificate after the client
    # has finished its handshake, so the client learns of the refusal only when
    # the connection drops before CONNACK; aiomqtt 2.5 reports that as a
    # timeout, hence the short one. tests/unit/test_doctor.py checks the TLS
    # alert itself (certificate required / expired / unknown CA).
    with pytest.raises(aiomqtt.MqttError):
        async with client(broker, tls_for(pki, who), timeout=1.0):
            pass
    # The same broker accepts the valid identity (the refusal is the certificate's).
    async with client(broker, tls_for(pki, GATEWAY_CN)):
        pass


async def test_gateway_with_expired_certificate_stays_disconnected(pki: Pki, broker: Mosquitto) -> None:
    def publisher(who: str, gateway_id: str) -> MqttSession:
        tls = tls_for(pki, who)
        return MqttSession(MqttConfig(port=broker.port, tls=tls, reconnect_initial_s=0.05), gateway_id)

    expired, good = publisher("expired", GATEWAY_ID), publisher(GATEWAY_CN, GATEWAY_ID)
    tasks = [asyncio.create_task(p.run()) for p in (expired, good)]
    try:
        await eventually(lambda: good.connected)
        await asyncio.sleep(1.0)
        assert not expired.connected
        assert expired.connects == 0
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_gateway_verifies_the_broker(pki: Pki, broker: Mosquitto) -> None:
    # A broker whose certificate our CA did not sign is not trusted.
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)certificate verify failed"):
        async with client(broker, tls_for(pki, GATEWAY_CN, ca=pki.other_ca)):
            pass
    # The broker certificate names 127.0.0.1 only: "localhost" fails the
    # hostname check unless verify_hostname is off.
    with pytest.raises(aiomqtt.MqttError):
        async with client(broker, tls_for(pki, GATEWAY_CN), host="localhost"):
            pass
    async with client(broker, tls_for(pki, GATEWAY_CN, verify_hostname=False), host="localhost"):
        pass


async def _drain_until(c: aiomqtt.Client, marker: bytes) -> list[tuple[str, bytes]]:
    """Messages received up to and including the one whose payload is ``marker``."""
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(5):
        async for msg in c.messages:
            got.append((str(msg.topic), bytes(msg.payload)))
            if got[-1][1] == marker:
                return got
    return got


async def test_acl_keeps_consumer_off_authority_and_cue_topics(pki: Pki, broker: Mosquitto) -> None:
    command, cue = f"{BASE}/authority/command", f"{BASE}/cues/launcher-1"
    async with (
        client(broker, tls_for(pki, GATEWAY_CN), identifier="gw") as gateway,
        client(broker, tls_for(pki, "operator-1"), identifier="op") as operator,
        client(broker, tls_for(pki, "consumer-1"), identifier="c2") as consumer,
    ):
        await gateway.subscribe(command, qos=1)
        await operator.subscribe(f"{BASE}/cues/#", qos=1)
        await consumer.subscribe(f"{BASE}/#", qos=1)  # reading is allowed
        # QoS 1: the broker has dealt with each publish (delivered or dropped)
        # before it acknowledges it, so the markers below arrive after any leak.
        await consumer.publish(command, b"consumer: AUTO_CUE", qos=1)
        await consumer.publish(cue, b"consumer: cue", qos=1)
        await consumer.publish(f"{BASE}/authority", b"consumer: state", qos=1)
        await operator.publish(cue, b"operator: cue", qos=1)
        await gateway.publish(command, b"gateway: AUTO_CUE", qos=1)  # not even the gateway itself
        # Positive controls: the identities that may publish are delivered.
        await operator.publish(command, b"operator: HOLD", qos=1)
        await gateway.publish(cue, b"gateway: cue", qos=1)

        at_gateway = await _drain_until(gateway, b"operator: HOLD")
        at_operator = await _drain_until(operator, b"gateway: cue")
        at_consumer = await _drain_until(consumer, b"gateway: cue")
    assert at_gateway == [(command, b"operator: HOLD")]
    assert at_operator == [(cue, b"gateway: cue")]
    # (the retained "online" of the publisher test may come first)
    assert [p for t, p in at_consumer if not t.endswith("/status")] == [b"operator: HOLD", b"gateway: cue"]


def _mqtt5_publish_reason(broker: Mosquitto, tls: MqttTlsConfig, topic: str) -> int:
    """PUBACK reason code of one QoS 1 publish over MQTT 5 (paho directly:
    aiomqtt 2.5 does not surface PUBACK reason codes)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    done, reasons = threading.Event(), list[int]()

    def on_publish(_c: paho.Client, _u: object, _mid: int, rc: ReasonCode, _p: Properties) -> None:
        reasons.append(rc.value)
        done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="c2-v5", protocol=paho.MQTTv5)
    c.tls_set_context(tls_context(tls))
    c.on_publish = on_publish
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        c.publish(topic, b"consumer: AUTO_CUE", qos=1)
        assert done.wait(5), "no PUBACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return reasons[0]


async def test_denied_publish_gets_not_authorized_over_mqtt5(pki: Pki, broker: Mosquitto) -> None:
    topic = f"{BASE}/authority/command"
    denied = await asyncio.to_thread(_mqtt5_publish_reason, broker, tls_for(pki, "consumer-1"), topic)
    allowed = await asyncio.to_thread(_mqtt5_publish_reason, broker, tls_for(pki, "operator-1"), topic)
    assert denied == 0x87  # Not authorized (MQTT 5.0 §3.4.2.1)
    assert allowed < 0x80  # success (0x10 "no matching subscribers" here)


async def test_acl_lets_operator_approve_cues_and_gateway_answer(pki: Pki, broker: Mosquitto) -> None:
    # The cue path's own topics (docs/topics.md): operator -> cue/command ->
    # gateway; gateway -> command/result and cue/list -> operator.
    command, result, cue_list = f"{BASE}/cue/command", f"{BASE}/command/result", f"{BASE}/cue/list"
    async with (
        client(broker, tls_for(pki, GATEWAY_CN), identifier="gw") as gateway,
        client(broker, tls_for(pki, "operator-1"), identifier="op") as operator,
        client(broker, tls_for(pki, "consumer-1"), identifier="c2") as consumer,
    ):
        await gateway.subscribe(command, qos=1)
        await operator.subscribe(result, qos=1)
        await operator.subscribe(cue_list, qos=1)
        await consumer.publish(command, b"consumer: approve", qos=1)
        await operator.publish(command, b"operator: approve", qos=1)
        await gateway.publish(result, b"gateway: ok", qos=1)
        await gateway.publish(cue_list, b"gateway: list", qos=1)
        at_gateway = await _drain_until(gateway, b"operator: approve")
        at_operator = await _drain_until(operator, b"gateway: list")
    assert at_gateway == [(command, b"operator: approve")]
    assert [p for _, p in at_operator] == [b"gateway: ok", b"gateway: list"]

"""The ``[nats]`` fast path with TLS and credentials against a real
nats-server on 127.0.0.1 (docs/federation.md §7): client listener with TLS
that requires a client certificate, and a user/password for every client
(NATS and MQTT alike), a PKI generated here (tests/e2e/test_broker_tls.py).

A site with its certificate and password publishes its picture on both
links; a client with the right CA, certificate and password (password from
the environment) gets the pictures over NATS. A theatre gateway whose
``[nats.tls]`` trusts another CA is refused by the server: the error names
the server and the reason, is counted, and the gateway keeps running on its
MQTT session, which brings every site picture. A client with a wrong
password is refused as an authorization violation, one without TLS is told
to set ``[nats.tls]``, counted; hilgw doctor says the same."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import MqttConfig, parse_config
from gateway.doctor_checks import Result
from gateway.doctor_nats import check_nats
from gateway.federation.fastpath import NatsLink, live_subject
from gateway.outputs.mqtt import Outgoing
from gateway.outputs.session import MqttSession
from gateway.sections.federation import NatsAuthConfig, NatsConfig, NatsTlsConfig
from gateway.supervisor import Gateway
from hilgw.v1 import track_pb2
from sim_devices.nats_cluster import NatsCluster, NatsServerTls, nats_server_path
from tests.e2e.test_broker_tls import Pki, make_pki
from tests.unit.test_federation import POS, VEL, site_batch
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

USERS = {"site-a": "pw-site-a", "theatre": "pw-theatre", "watcher": "pw-watcher"}
SENT = 30


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", extra=("site-a", "theatre", "watcher"))


@pytest.fixture
def cluster(tmp_path: Path, pki: Pki) -> Iterator[NatsCluster]:
    if nats_server_path() is None:
        pytest.fail("nats-server is not installed: run ./scripts/test, which installs it")
    # One node: TLS and authorization are per node; failover is test_federation_nats.py's.
    c = NatsCluster(
        tmp_path / "nats", 1, client_tls=NatsServerTls(pki.broker.cert, pki.broker.key, pki.ca), users=USERS
    )
    c.start()
    yield c
    c.stop()


def password_file(tmp: Path, user: str, password: str) -> Path:
    path = tmp / f"{user}.password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def tls(pki: Pki, who: str, ca: Path | None = None) -> NatsTlsConfig:
    return NatsTlsConfig(ca_file=ca or pki.ca, cert_file=pki.clients[who].cert, key_file=pki.clients[who].key)


async def test_tls_and_credentials_on_the_fast_path(
    cluster: NatsCluster, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers, hosts = cluster.nats_servers, cluster.mqtt_hosts
    monkeypatch.setenv("HILGW_TEST_NATS_PASSWORD", USERS["watcher"])
    subject = live_subject("hilgw", "site-a")

    def link(who: str, auth: NatsAuthConfig) -> NatsLink:
        return NatsLink(NatsConfig(servers=servers, tls=tls(pki, who), auth=auth), f"test-{who}")

    site_pw = password_file(tmp_path, "site-a", USERS["site-a"])
    site_link = link("site-a", NatsAuthConfig(user="site-a", password_file=site_pw))
    site_mqtt = MqttSession(MqttConfig(hosts=hosts, username="site-a", password=USERS["site-a"]), "site-a")
    watcher = link("watcher", NatsAuthConfig(user="watcher", password_env="HILGW_TEST_NATS_PASSWORD"))
    got: list[track_pb2.TrackBatch] = []
    watcher.subscribe(subject, lambda _s, p: got.append(track_pb2.TrackBatch.FromString(p)))
    wrong_pw = password_file(tmp_path, "wrong", "not-the-password")
    wrong = link("watcher", NatsAuthConfig(user="watcher", password_file=wrong_pw))
    plain = NatsLink(NatsConfig(servers=servers), "test-plain")  # no [nats.tls] at all
    theatre_cfg = parse_config(
        {
            "gateway_id": "theatre",
            "mqtt": {"hosts": hosts, "username": "theatre", "password": USERS["theatre"]},
            "nats": {  # trusts another CA: the server's certificate does not verify
                "servers": servers,
                "tls": {
                    "ca_file": str(pki.other_ca),
                    "cert_file": str(pki.clients["theatre"].cert),
                    "key_file": str(pki.clients["theatre"].key),
                },
                "auth": {
                    "user": "theatre",
                    "password_file": str(password_file(tmp_path, "theatre", USERS["theatre"])),
                },
            },
            "federation": {"sites": [{"gateway_id": "site-a"}], "gap_wait_s": 60.0},
            "metrics": {"port": 0},
        }
    )
    tasks = [asyncio.create_task(x.run()) for x in (site_link, site_mqtt, watcher, wrong, plain)]
    try:
        async with Gateway(theatre_cfg) as theatre:
            assert theatre.nats is not None
            assert theatre.mqtt is not None
            fast, mqtt = theatre.nats, theatre.mqtt
            await eventually(
                lambda: site_link.connected and watcher.connected and site_mqtt.connected and mqtt.connected,
                60.0,
                "the site's links, the watcher and the theatre's MQTT session up",
            )
            # Every picture waits for the theatre's SUBACK: counting starts at the first one it sees.
            await eventually(lambda: all(s.acks >= 1 for s in mqtt._subs), 60.0, "the theatre's SUBACKs")
            for seq in range(1, SENT + 1):
                b = site_batch("site-a", seq, time.time_ns(), POS + VEL * seq * 0.05, VEL)
                site_mqtt.enqueue(Outgoing("hilgw/site-a/tracks", b.SerializeToString(), 1, kind="tracks"))
                site_link.publish(subject, b.SerializeToString())
                await asyncio.sleep(0.05)
            site = theatre.sites[0]
            await eventually(lambda: site.last_seq >= SENT and len(got) >= SENT, 60.0, "every picture")
            refused = (fast, "tls_verify"), (wrong, "auth"), (plain, "tls_required")
            await eventually(lambda: all(x.errors[why] >= 1 for x, why in refused), 60.0, "each refusal")
            theatre_error, theatre_errors = fast.last_errors["tls_verify"], dict(fast.errors)
            theatre_up = fast.connected
            assert theatre.metrics is not None
            exposition = theatre.metrics.exposition().decode()
            used, by_path = site.used + site.first_seq - 1, dict(site.used_by_path)
            # The clients' errors while the pictures flowed: what a link says while it
            # is being torn down below (a TLS close racing a read) is not in question.
            site_errors, site_error = dict(site_link.errors), site_link.last_error
            watcher_errors, watcher_error = dict(watcher.errors), watcher.last_error
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    # The authenticated TLS client got every picture the site published over NATS.
    assert [b.batch_sequence for b in got] == list(range(1, SENT + 1))
    assert site_link.published == SENT
    assert not site_errors, site_error
    assert not watcher_errors, watcher_error
    # The theatre was refused (the server's certificate is not from its CA): the
    # error names the server and the reason, counted; it never connected...
    assert not theatre_up
    assert theatre_error.startswith(servers[0] + ": certificate verify failed"), theatre_error
    assert "auth" not in theatre_errors, theatre_errors  # refused before its credentials were read
    counted = float(theatre_errors["tls_verify"])  # read in the same loop turn as the exposition
    assert f'hilgw_nats_errors_total{{reason="tls_verify"}} {counted}' in exposition
    assert "hilgw_nats_connected 0.0" in exposition
    # ...and took every site picture over its MQTT session instead.
    assert used == SENT, (used, by_path)
    assert by_path == {"mqtt": used}
    # The wrong password: refused by the server, named as such.
    assert not wrong.connected
    refused = wrong.last_errors["auth"]
    assert refused.startswith(servers[0] + ": the server refused these credentials"), wrong.last_errors
    assert "authorization violation" in refused.lower()

    # hilgw doctor: the same three identities, one connect each.
    good = NatsConfig(servers=servers, tls=tls(pki, "site-a"), auth=site_link.config.auth)
    other_ca = NatsConfig(servers=servers, tls=tls(pki, "site-a", pki.other_ca), auth=site_link.config.auth)
    [ok] = await asyncio.to_thread(check_nats, good, 10.0)
    assert ok.result is Result.PASS, ok
    assert ok.name == f"nats server {servers[0]} (tls)"
    [bad_ca] = await asyncio.to_thread(check_nats, other_ca, 10.0)
    assert (bad_ca.result, bad_ca.detail.split(":")[0]) == (Result.FAIL, "tls_verify"), bad_ca
    assert "nats.tls.ca_file" in bad_ca.fix
    [bad_pw] = await asyncio.to_thread(check_nats, wrong.config, 10.0)
    assert (bad_pw.result, bad_pw.detail.split(":")[0]) == (Result.FAIL, "auth"), bad_pw
    # No [nats.tls] against a TLS server: the fix named is [nats.tls] itself.
    assert plain.last_errors["tls_required"] == f"{servers[0]}: the server requires TLS: set [nats.tls]"
    assert not plain.connected

"""``[nats.tls]``/``[nats.auth]``: what the config refuses at load, the errors
that name the key when a file or secret is wrong at connect time, and the
fast path counting them without a server (gateway/federation/nats_security.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import parse_config
from gateway.federation.fastpath import NatsLink
from gateway.federation.nats_security import connect_options, refusal, server_urls
from gateway.sections.federation import NatsAuthConfig, NatsConfig, NatsTlsConfig
from hilgw.errors import ConfigError
from tests.e2e.test_broker_tls import GATEWAY_CN, Pki, make_pki
from tests.waiting import eventually

SERVERS = ["127.0.0.1:4222"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def cfg(**kw: object) -> NatsConfig:
    return NatsConfig(servers=SERVERS, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"user": "u"}, "user needs password_file or password_env"),
        ({"password_env": "P"}, "a password needs user"),
        ({"user": "u", "password_env": "P", "password_file": "/p"}, "set one"),
        ({"user": "u", "password_env": "P", "creds_file": "/c"}, "exactly one"),
        ({}, "exactly one"),
        ({"user": "u", "password_env": "1BAD"}, "password_env"),
    ],
)
def test_auth_takes_exactly_one_method(auth: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        cfg(auth=auth)


def test_unknown_keys_are_refused_and_a_key_needs_its_certificate() -> None:
    with pytest.raises(ConfigError, match=r"nats\.auth\.password: unknown key"):  # no inline secrets
        parse_config({"mqtt": {}, "nats": {"servers": SERVERS, "auth": {"user": "u", "password": "inline"}}})
    with pytest.raises(ValidationError, match="key_file needs cert_file"):
        cfg(tls={"ca_file": "/ca", "key_file": "/k"})


def test_a_good_config_gives_a_verifying_context_and_credentials(pki: Pki, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\nignored\n")
    ident = pki.clients[GATEWAY_CN]
    c = cfg(
        tls=NatsTlsConfig(ca_file=pki.ca, cert_file=ident.cert, key_file=ident.key, server_name="nats.site"),
        auth=NatsAuthConfig(user="gw", password_file=pw),
    )
    opts = connect_options(c)
    ctx = opts["tls"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert opts["tls_hostname"] == "nats.site"
    assert (opts["user"], opts["password"]) == ("gw", "s3cret")
    assert server_urls(c) == ["tls://127.0.0.1:4222"]
    assert server_urls(cfg()) == ["nats://127.0.0.1:4222"]
    assert connect_options(cfg()) == {}


def test_bad_files_and_secrets_name_their_key(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = pki.clients[GATEWAY_CN]

    def key_of(c: NatsConfig) -> tuple[str, str]:
        with pytest.raises(ConfigError) as err:
            connect_options(c)
        return err.value.key, err.value.reason

    key, reason = key_of(cfg(tls=NatsTlsConfig(ca_file=tmp_path / "nope.crt")))
    assert key == "nats.tls.ca_file"
    assert reason.endswith("nope.crt: missing")
    # A key that is not the certificate's: unreadable as a pair.
    other = pki.clients["operator-1"]
    key, reason = key_of(cfg(tls=NatsTlsConfig(ca_file=pki.ca, cert_file=ident.cert, key_file=other.key)))
    assert key == "nats.tls.cert_file/key_file"
    assert "certificate/key pair" in reason
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")
    assert key_of(cfg(tls=NatsTlsConfig(ca_file=garbage)))[0] == "nats.tls.ca_file"
    monkeypatch.delenv("HILGW_NO_SUCH_PASSWORD", raising=False)
    key, reason = key_of(cfg(auth=NatsAuthConfig(user="u", password_env="HILGW_NO_SUCH_PASSWORD")))
    assert (key, reason) == (
        "nats.auth.password_env",
        "environment variable HILGW_NO_SUCH_PASSWORD is not set",
    )
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert key_of(cfg(auth=NatsAuthConfig(user="u", password_file=empty))) == (
        "nats.auth.password_file",
        f"{empty}: empty",
    )
    assert key_of(cfg(auth=NatsAuthConfig(creds_file=tmp_path / "x.creds")))[0] == "nats.auth.creds_file"
    if importlib.util.find_spec("nkeys") is None:
        creds = tmp_path / "gw.creds"
        creds.write_text("-----BEGIN NATS USER JWT-----\n")
        assert "nkeys" in key_of(cfg(auth=NatsAuthConfig(creds_file=creds)))[1]


def test_refusals_are_classified() -> None:
    verify = ssl.SSLCertVerificationError(1, "x")
    verify.verify_message = "unable to get local issuer certificate"
    assert refusal(verify)[0] == "tls_verify"
    assert "unable to get local issuer certificate" in refusal(verify)[1]
    from nats.errors import Error as NatsError

    assert refusal(NatsError("nats: 'Authorization Violation'"))[0] == "auth"
    assert refusal(NatsError("nats: 'Secure Connection - TLS Required'"))[0] == "tls_required"
    assert refusal(TimeoutError())[0] == "timeout"
    assert refusal(ConnectionRefusedError(111, "Connection refused")) == ("unreachable", "Connection refused")


async def test_the_link_counts_a_bad_file_and_keeps_trying(tmp_path: Path) -> None:
    """No server is needed: the CA file is checked before any connection."""
    link = NatsLink(
        NatsConfig(servers=SERVERS, reconnect_wait_s=0.01, tls={"ca_file": tmp_path / "ca.crt"}), "t"
    )
    task = asyncio.create_task(link.run())
    try:
        await eventually(lambda: link.errors["config"] >= 2, task=task)  # retried, not ended
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert link.last_errors["config"] == f"config: nats.tls.ca_file: {tmp_path / 'ca.crt'}: missing"
    assert not link.connected


def test_doctor_names_a_missing_file_without_connecting(tmp_path: Path) -> None:
    from gateway.doctor_checks import Result
    from gateway.doctor_nats import check_nats

    [c] = check_nats(cfg(tls=NatsTlsConfig(ca_file=tmp_path / "ca.crt")))
    assert (c.name, c.result) == ("nats nats.tls.ca_file", Result.FAIL)
    assert c.detail.endswith("ca.crt: missing")
    assert "nats.tls.ca_file" in c.fix


def test_doctor_runs_the_nats_checks_for_a_config_with_nats(tmp_path: Path) -> None:
    from gateway.doctor import run_checks

    config = parse_config(
        {
            "mqtt": {"port": 1},  # nothing there: its row fails, the nats row is the one read
            "nats": {"servers": SERVERS, "tls": {"ca_file": str(tmp_path / "ca.crt")}},
        }
    )
    rows = {c.name: c for c in run_checks(config, timeout_s=0.5)}
    assert rows["nats nats.tls.ca_file"].result.value == "FAIL"

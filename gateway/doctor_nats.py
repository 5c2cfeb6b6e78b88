"""``hilgw doctor``: the ``[nats]`` fast path (docs/federation.md §7).

The TLS files and credentials first (the same :func:`connect_options` the
link uses, so a failure names the same key), then one NATS connect to each
server of ``nats.servers`` with them, no reconnect: PASS, or the server's
refusal (certificate, credentials, TLS required) and what to fix.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from nats.aio.client import Client as NatsClient

from gateway.doctor_checks import Check, Result
from gateway.federation.nats_security import connect_options, refusal, server_urls
from gateway.sections.federation import NatsConfig
from hilgw.errors import ConfigError

__all__ = ["check_nats"]


def _loopback(server: str) -> bool:
    host = server.rpartition(":")[0]
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


async def _probe(url: str, opts: dict[str, Any], timeout_s: float) -> str:
    nc = NatsClient()
    errors: list[BaseException] = []

    async def error(exc: Exception) -> None:  # nats-py logs to stderr without one
        errors.append(exc)

    await nc.connect(
        servers=[url],
        name="hilgw-doctor",
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=timeout_s,  # type: ignore[arg-type]  # a float is fine at run time
        error_cb=error,
        **opts,
    )
    try:
        return str(nc._server_info.get("version", "?"))  # private to nats-py: the INFO it got
    finally:
        await nc.close()


def check_nats(nats: NatsConfig, timeout_s: float = 3.0) -> list[Check]:
    """The ``[nats.tls]``/``[nats.auth]`` files and secrets, then a connect to each server."""
    try:
        opts = connect_options(nats)
    except ConfigError as exc:
        fix = f"install it, or fix {exc.key} (absolute paths: the unit runs in /var/lib/hilgw)"
        return [Check(f"nats {exc.key}", Result.FAIL, exc.reason, fix)]
    checks: list[Check] = []
    if nats.tls is None and not all(_loopback(s) for s in nats.servers):
        checks.append(
            Check(
                "nats tls", Result.WARN, "plain TCP off this host", "add [nats.tls] (docs/federation.md §7)"
            )
        )
    suffix = " (tls)" if nats.tls is not None else ""
    for server, url in zip(nats.servers, server_urls(nats), strict=True):
        name = f"nats server {server}{suffix}"
        try:
            version = asyncio.run(_probe(url, opts, timeout_s))
        except Exception as exc:  # every refusal and network error is a finding here
            reason, text = refusal(exc)
            fix = {
                "tls_verify": "point nats.tls.ca_file at the CA that signed the servers; set server_name if "
                "their certificates do not name this address",
                "tls": "the server refused this client certificate: nats.tls.cert_file/key_file from its CA",
                "tls_required": "the server requires TLS: add [nats.tls]",
                "auth": "check [nats.auth] against the server's users/accounts",
            }.get(reason, "is nats-server running on that address? check nats.servers and the firewall")
            checks.append(Check(name, Result.FAIL, f"{reason}: {text}", fix))
            continue
        checks.append(Check(name, Result.PASS, f"connected (nats-server {version})"))
    return checks

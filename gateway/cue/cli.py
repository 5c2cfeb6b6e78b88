"""Operator commands of the ``hilgw`` CLI: ``authority show|set|hold --local``,
``cue list|approve|reject``, ``audit verify`` (docs/cue-path.md §8).

``set``, ``approve`` and ``reject`` build a command, sign it with an operator
key from the keys file and publish it on the gateway's command topic, then
wait for the gateway's :class:`CommandResult` and exit 0 only if it was
accepted. ``show`` and ``list`` read the retained state topics. Nothing the
gateway says is believed unless its Ed25519 signature verifies against a
``[gateway.<id>]`` key of the keys file (gateway.cue.outputs): an unsigned or
forged answer is ignored and counted, and without a verified answer the CLI
says so ("no verified answer") and exits 1. A verified state older than
``--stale-after`` is shown as the last words of an OFFLINE gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field

import aiomqtt
from google.protobuf.message import DecodeError, Message
from rich.console import Console
from rich.table import Table

from gateway.cue.audit import audit_head_key, verify_file
from gateway.cue.authority import authority_name, parse_authority
from gateway.cue.book import status_name
from gateway.cue.keys import GatewayKey, load_keys
from gateway.cue.outputs import verify_output
from gateway.cue.path import STATE_REPUBLISH_S, CueTopics
from gateway.cue.signing import sign
from gateway.outputs.mqtt import tls_context
from hilgw.errors import ConfigError, TransportError
from hilgw.v1 import cue_pb2

__all__ = ["main"]

COMMANDS = ("authority", "cue", "audit")


def main(ns: argparse.Namespace) -> int:
    if ns.cmd == "audit":
        return _audit_verify(ns)
    from gateway.config import load_config

    config = load_config(ns.config)
    topics = CueTopics(config.mqtt.topic_prefix, config.gateway_id)
    if ns.cmd == "authority" and ns.action == "hold":
        return _local_hold(ns, config.cue)
    keys_file = ns.keys or (config.cue.keys_file if config.cue is not None else None)
    if keys_file is None:
        raise ConfigError(f"{ns.config}: cue", "no [cue] section (keys_file) and no --keys")
    keys = load_keys(keys_file)
    if not keys.gateway:
        raise ConfigError(str(keys_file), "no [gateway.<id>] key: nothing the gateway says can be verified")
    if ns.action in ("show", "list"):
        kind = "authority" if ns.action == "show" else "cues"
        got = asyncio.run(_read_state(config.mqtt, topics, kind, keys.gateway, ns.timeout, ns.stale_after))
        return _show_state(got, ns.stale_after)
    key = keys.operator.get(ns.key_id)
    if key is None:
        raise ConfigError("--key-id", f"no [operator.{ns.key_id}] in the keys file")
    operator = ns.operator or key.operator
    if not operator:
        raise ConfigError("--operator", "needed: the key is not bound to an operator")
    seq = ns.sequence if ns.sequence is not None else time.time_ns() // 1000
    cmd: cue_pb2.AuthorityCommand | cue_pb2.CueCommand
    if ns.cmd == "authority":
        try:
            level = parse_authority(ns.level)
        except ValueError as exc:
            raise ConfigError("level", str(exc)) from None
        cmd = cue_pb2.AuthorityCommand(requested=level, operator_id=operator, sequence=seq)
        topic = topics.authority_command
        lane = _lane(ns, config.mqtt.command_lanes, key.operator)
        if lane is not None:
            topic = topics.lane_authority(lane)
    else:
        action = cue_pb2.CUE_ACTION_APPROVE if ns.action == "approve" else cue_pb2.CUE_ACTION_REJECT
        cmd = cue_pb2.CueCommand(action=action, cue_id=ns.cue_id, operator_id=operator, sequence=seq)
        topic = topics.cue_command
        lane = _lane(ns, config.mqtt.command_lanes, key.operator)
        if lane is not None:
            topic = topics.lane_cue(lane)
        if ns.action == "approve":  # bind what this operator sees (a verified, live cue list)
            got = asyncio.run(
                _read_state(config.mqtt, topics, "cues", keys.gateway, ns.timeout, ns.stale_after)
            )
            rec = _bind_approval(cmd, got, ns.stale_after, ns.approval_valid_s)
            print(f"approving cue {rec.cue_id}: launcher {rec.launcher_id}, track {rec.system_track_id}")
    cmd.gateway_id, cmd.reason, cmd.timestamp_ns = config.gateway_id, ns.reason, time.time_ns()
    sign(cmd, key.key_id, key.secret)
    result, ignored = asyncio.run(_send_command(config.mqtt, topics, topic, cmd, keys.gateway, ns.timeout))
    note = f"; {ignored} unverified answer(s) ignored" if ignored else ""
    if result is None:
        print(f"hilgw: no verified answer from the gateway after {ns.timeout} s{note}", file=sys.stderr)
        if lane is not None:  # the commonest cause: the certificate is not this operator's
            print(
                f"hilgw: sent on the lane of {lane!r} ({topic}); the broker drops it unless this "
                f"station's certificate CN is {lane!r}",
                file=sys.stderr,
            )
        return 1
    what = f"{ns.cmd} {ns.action if ns.cmd == 'cue' else ns.level} (sequence {seq})"
    signer = f"signed by gateway key {result.gateway_key_id}"
    if result.accepted:
        print(f"accepted: {what}; {signer}{note}")
        return 0
    print(f"hilgw: rejected by the gateway: {result.reason} ({signer}){note}", file=sys.stderr)
    return 1


def _lane(ns: argparse.Namespace, lanes: str, bound: str | None) -> str | None:
    """The operator lane to publish on (docs/cue-path.md §12), or None: the shared topic.

    A key bound to an operator id uses that operator's lane unless lanes are
    off in the config or ``--shared-topic`` is given."""
    if bound is None or lanes == "off" or ns.shared_topic:
        return None
    return bound


def _audit_verify(ns: argparse.Namespace) -> int:
    head_key = None
    if ns.keys is not None:
        gw = load_keys(ns.keys).signing_key()
        if gw is None or gw.private is None:
            raise ConfigError(str(ns.keys), "no [gateway.<id>] secret: the head MAC key derives from it")
        head_key = audit_head_key(gw.private)
    res = verify_file(ns.file, head_key=head_key, require_head=not ns.no_head)
    auth = "head authenticated" if head_key is not None else "head NOT authenticated (give --keys)"
    print(f"{ns.file}: {res}" + (f"; {auth}" if res.ok else ""))
    return 0 if res.ok else 1


def _local_hold(ns: argparse.Namespace, cue: object) -> int:
    from gateway.cue.local_hold import request_local_hold
    from gateway.sections.cue import CueConfig

    sock = ns.socket or (cue.local_hold_socket if isinstance(cue, CueConfig) else None)
    if sock is None:
        raise ConfigError(f"{ns.config}: cue.local_hold_socket", "not set and no --socket")
    try:
        answer = asyncio.run(request_local_hold(sock, ns.timeout))
    except (OSError, TimeoutError) as exc:
        raise TransportError(f"local hold via {sock}: {exc}; send SIGUSR1 to the gateway instead") from None
    if answer.startswith("OK"):
        print(f"local HOLD in effect ({answer})")
        return 0
    print(f"hilgw: local hold: {answer or 'no answer'}", file=sys.stderr)
    return 1


@dataclass
class _State:
    """What :func:`_read_state` found: the newest verified message, and what it ignored."""

    msg: cue_pb2.AuthorityState | cue_pb2.CueList | None = None
    key_id: str = ""
    unverified: list[str] = field(default_factory=list)
    fresh: bool = False


def _age_s(msg: cue_pb2.AuthorityState | cue_pb2.CueList) -> float:
    return (time.time_ns() - msg.time_ns) * 1e-9


async def _read_state(
    mqtt: object, topics: CueTopics, kind: str, keys: dict[str, GatewayKey], wait_s: float, stale_s: float
) -> _State:
    """Read the retained state (and republications) until a verified, fresh one comes
    or ``wait_s`` is over; unsigned or forged ones are counted, never returned."""
    topic = topics.authority if kind == "authority" else topics.cue_list
    got = _State()
    try:
        async with _client(mqtt) as client:
            await client.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    async for m in client.messages:
                        msg = cue_pb2.AuthorityState() if kind == "authority" else cue_pb2.CueList()
                        try:
                            msg.ParseFromString(m.payload if isinstance(m.payload, bytes) else b"")
                        except DecodeError:
                            got.unverified.append("not decodable")
                            continue
                        v = verify_output(msg, keys)
                        if not v.ok:
                            got.unverified.append(v.why)
                        elif got.msg is None or msg.time_ns >= got.msg.time_ns:
                            got.msg, got.key_id = msg, v.key_id
                            if _age_s(msg) <= stale_s:
                                got.fresh = True
                                break
    except aiomqtt.MqttError as exc:
        raise TransportError(f"mqtt: {exc}") from None
    return got


def _show_state(got: _State, stale_s: float) -> int:
    ignored = (
        f" ({len(got.unverified)} unverified message(s) ignored: {', '.join(sorted(set(got.unverified)))})"
    )
    ignored = ignored if got.unverified else ""
    if got.msg is None:
        print(f"hilgw: no verified answer{ignored}", file=sys.stderr)
        return 1
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(got.msg.time_ns / 1e9))
    if not got.fresh:
        print(
            f"gateway {got.msg.gateway_id} OFFLINE: last state at {when} UTC "
            f"({_age_s(got.msg):.0f} s ago; live ones are republished every {STATE_REPUBLISH_S:g} s){ignored}"
        )
        _print(got.msg, f"last known, signed by gateway key {got.key_id}")
        return 1
    _print(got.msg, f"verified: signed by gateway key {got.key_id}, {when} UTC")
    if ignored:
        print(f"note:{ignored}")
    return 0


def _bind_approval(cmd: cue_pb2.CueCommand, got: _State, stale_s: float, valid_s: float) -> cue_pb2.CueRecord:
    if got.msg is None or not isinstance(got.msg, cue_pb2.CueList):
        raise TransportError("no verified cue list: cannot bind the approval to what the gateway cued")
    if not got.fresh:
        raise TransportError(f"the gateway's cue list is older than {stale_s:g} s: gateway offline?")
    for record in got.msg.cues:
        if record.cue_id == cmd.cue_id:
            if record.status != cue_pb2.CUE_STATUS_PENDING_APPROVAL:
                raise TransportError(
                    f"cue {cmd.cue_id} is {status_name(record.status)}, not pending approval"
                )
            cmd.track_id, cmd.state_digest = record.system_track_id, record.state_digest
            cmd.expires_ns = time.time_ns() + int(valid_s * 1e9)
            return record
    raise TransportError(f"cue {cmd.cue_id} is not in the gateway's (verified) cue list")


def _client(mqtt: object) -> aiomqtt.Client:
    from gateway.config import MqttConfig

    assert isinstance(mqtt, MqttConfig)
    return aiomqtt.Client(
        hostname=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        identifier=f"hilgw-cli-{time.time_ns()}",
        tls_context=tls_context(mqtt.tls) if mqtt.tls is not None else None,
    )


async def _send_command(
    mqtt: object,
    topics: CueTopics,
    topic: str,
    cmd: cue_pb2.AuthorityCommand | cue_pb2.CueCommand,
    keys: dict[str, GatewayKey],
    wait_s: float,
) -> tuple[cue_pb2.CommandResult | None, int]:
    """Publish ``cmd``; the gateway's verified answer to it (None after ``wait_s``),
    and how many answers that did not verify were ignored."""
    ignored = 0
    try:
        async with _client(mqtt) as client:
            await client.subscribe(topics.result, qos=1)
            await client.publish(topic, cmd.SerializeToString(), qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    async for msg in client.messages:
                        res = cue_pb2.CommandResult()
                        try:
                            res.ParseFromString(msg.payload if isinstance(msg.payload, bytes) else b"")
                        except DecodeError:
                            continue
                        if res.key_id != cmd.key_id or res.sequence != cmd.sequence:
                            continue
                        if not verify_output(res, keys).ok:
                            ignored += 1
                            continue
                        return res, ignored
    except aiomqtt.MqttError as exc:
        raise TransportError(f"mqtt: {exc}") from None
    return None, ignored


def _print(msg: Message, caption: str) -> None:
    console = Console()
    if isinstance(msg, cue_pb2.AuthorityState):
        t = Table(title=f"engagement authority: {msg.gateway_id}", caption=caption)
        for col in ("authority", "since (UTC)", "changed by", "reason", "inhibits"):
            t.add_column(col)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(msg.since_time_ns / 1e9))
        t.add_row(
            authority_name(msg.authority), since, msg.changed_by, msg.reason, ", ".join(msg.inhibits) or "-"
        )
    else:
        assert isinstance(msg, cue_pb2.CueList)
        t = Table(
            title=f"cues: {msg.gateway_id} (authority {authority_name(msg.authority)})", caption=caption
        )
        for col in ("cue", "launcher", "track", "status", "attempts", "sequence", "detail"):
            t.add_column(col)
        for c in msg.cues:
            t.add_row(str(c.cue_id), c.launcher_id, str(c.system_track_id), status_name(c.status),
                      str(c.attempts), str(c.sequence), c.detail)  # fmt: skip
    console.print(t)

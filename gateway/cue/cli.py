"""Operator commands of the ``hilgw`` CLI: ``authority show|set``, ``cue list|approve|reject``,
``audit verify`` (docs/cue-path.md §8).

``set``, ``approve`` and ``reject`` build a command, sign it with an operator
key from the keys file and publish it on the gateway's command topic, then
wait for the gateway's :class:`CommandResult` and exit 0 only if it was
accepted. ``show`` and ``list`` read the retained state topics.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiomqtt
from google.protobuf.message import DecodeError, Message
from rich.console import Console
from rich.table import Table

from gateway.cue.audit import verify_file
from gateway.cue.authority import authority_name, parse_authority
from gateway.cue.book import status_name
from gateway.cue.keys import load_keys
from gateway.cue.path import CueTopics
from gateway.cue.signing import sign
from gateway.outputs.mqtt import tls_context
from hilgw.errors import ConfigError, HilgwError, TransportError
from hilgw.v1 import cue_pb2

__all__ = ["main"]

COMMANDS = ("authority", "cue", "audit")


def main(ns: argparse.Namespace) -> int:
    if ns.cmd == "audit":
        res = verify_file(ns.file)
        print(f"{ns.file}: {res}")
        return 0 if res.ok else 1
    from gateway.config import load_config

    config = load_config(ns.config)
    topics = CueTopics(config.mqtt.topic_prefix, config.gateway_id)
    if ns.action in ("show", "list"):
        topic = topics.authority if ns.action == "show" else topics.cue_list
        msg: Message = cue_pb2.AuthorityState() if ns.action == "show" else cue_pb2.CueList()
        payload = asyncio.run(_read_retained(config.mqtt, topic, ns.timeout))
        try:
            msg.ParseFromString(payload)
        except DecodeError:
            raise HilgwError(f"{topic}: not a {msg.DESCRIPTOR.name}") from None
        _print(msg)
        return 0
    if config.cue is None and ns.keys is None:
        raise ConfigError(f"{ns.config}: cue", "no [cue] section (keys_file) and no --keys")
    keys = load_keys(ns.keys or config.cue.keys_file)  # type: ignore[union-attr]  # checked above
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
    else:
        action = cue_pb2.CUE_ACTION_APPROVE if ns.action == "approve" else cue_pb2.CUE_ACTION_REJECT
        cmd = cue_pb2.CueCommand(action=action, cue_id=ns.cue_id, operator_id=operator, sequence=seq)
        topic = topics.cue_command
    cmd.gateway_id, cmd.reason, cmd.timestamp_ns = config.gateway_id, ns.reason, time.time_ns()
    sign(cmd, key.key_id, key.secret)
    result = asyncio.run(_send_command(config.mqtt, topics, topic, cmd, ns.timeout))
    if result.accepted:
        print(f"accepted: {ns.cmd} {ns.action if ns.cmd == 'cue' else ns.level} (sequence {seq})")
        return 0
    print(f"hilgw: rejected by the gateway: {result.reason}", file=sys.stderr)
    return 1


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


async def _read_retained(mqtt: object, topic: str, wait_s: float) -> bytes:
    try:
        async with _client(mqtt) as client:
            await client.subscribe(topic, qos=1)
            async with asyncio.timeout(wait_s):
                async for msg in client.messages:
                    if isinstance(msg.payload, bytes):
                        return msg.payload
    except aiomqtt.MqttError as exc:
        raise TransportError(f"mqtt: {exc}") from None
    except TimeoutError:
        raise TransportError(f"nothing on {topic} after {wait_s} s: is the gateway running?") from None
    raise TransportError(f"{topic}: no payload")  # pragma: no cover - the loop only ends by timeout


async def _send_command(
    mqtt: object,
    topics: CueTopics,
    topic: str,
    cmd: cue_pb2.AuthorityCommand | cue_pb2.CueCommand,
    wait_s: float,
) -> cue_pb2.CommandResult:
    try:
        async with _client(mqtt) as client:
            await client.subscribe(topics.result, qos=1)
            await client.publish(topic, cmd.SerializeToString(), qos=1)
            async with asyncio.timeout(wait_s):
                async for msg in client.messages:
                    res = cue_pb2.CommandResult()
                    try:
                        res.ParseFromString(msg.payload if isinstance(msg.payload, bytes) else b"")
                    except DecodeError:
                        continue
                    if res.key_id == cmd.key_id and res.sequence == cmd.sequence:
                        return res
    except aiomqtt.MqttError as exc:
        raise TransportError(f"mqtt: {exc}") from None
    except TimeoutError:
        raise TransportError(f"no answer from the gateway after {wait_s} s") from None
    raise TransportError("no answer from the gateway")  # pragma: no cover


def _print(msg: Message) -> None:
    console = Console()
    if isinstance(msg, cue_pb2.AuthorityState):
        t = Table(title=f"engagement authority: {msg.gateway_id}")
        for col in ("authority", "since (UTC)", "changed by", "reason", "inhibits"):
            t.add_column(col)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(msg.since_time_ns / 1e9))
        t.add_row(
            authority_name(msg.authority), since, msg.changed_by, msg.reason, ", ".join(msg.inhibits) or "-"
        )
    else:
        assert isinstance(msg, cue_pb2.CueList)
        t = Table(title=f"cues: {msg.gateway_id} (authority {authority_name(msg.authority)})")
        for col in ("cue", "launcher", "track", "status", "attempts", "sequence", "detail"):
            t.add_column(col)
        for c in msg.cues:
            t.add_row(str(c.cue_id), c.launcher_id, str(c.system_track_id), status_name(c.status),
                      str(c.attempts), str(c.sequence), c.detail)  # fmt: skip
    console.print(t)

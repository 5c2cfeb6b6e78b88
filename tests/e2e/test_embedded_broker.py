"""The embedded broker (`[mqtt] broker = "embedded"`) delivers as docs/topics.md says.

Every topic of docs/topics.md's tables is published at its documented QoS and
retain flag; a client subscribed at QoS 1 must be granted QoS 1, get each
retained topic exactly once on subscribing (RETAIN set, MQTT 3.1.1 §3.3.1.3)
and nothing else, then each live message exactly once at the minimum of the
published and granted QoS (§3.8.4) with RETAIN clear. The in-process amqtt
broker this replaced failed both (QoS 0 topics at QoS 1, retained twice).
"""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

import aiomqtt
import pytest

from gateway.outputs.broker import EmbeddedBroker, find_mosquitto
from hilgw.errors import ConfigError, TransportError

pytestmark = pytest.mark.e2e
TOPICS_MD = Path(__file__).resolve().parents[2] / "docs" / "topics.md"
PREFIX, GATEWAY, NAME = "hilgw", "gw-1", "dev-1"
END = f"{PREFIX}/{GATEWAY}/test-end"


def documented_topics(
    prefix: str = PREFIX, gateway: str = GATEWAY, name: str = NAME
) -> dict[str, tuple[int, bool]]:
    """topic -> (QoS, retained) from the tables of docs/topics.md (first row of each topic),
    with ``{device}``, ``{launcher}`` and ``{operator}`` replaced by ``name``."""
    out: dict[str, tuple[int, bool]] = {}
    for line in TOPICS_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.match(r"`(\{prefix\}/[^`]+)`", cells[0]) if len(cells) >= 4 else None
        q = re.match(r"[01]\b", cells[2]) if m else None
        if m is None or q is None or cells[3] not in ("yes", "no"):
            continue
        topic = m.group(1).format(prefix=prefix, gateway=gateway, device=name, launcher=name, operator=name)
        out.setdefault(topic, (int(q.group(0)), cells[3] == "yes"))
    return out


def documented(topic: str, prefix: str, gateway: str) -> tuple[int, bool]:
    """(QoS, retained) docs/topics.md gives a concrete topic of gateway ``gateway``."""
    for pattern, doc in documented_topics(re.escape(prefix), re.escape(gateway), "[^/]+").items():
        if re.fullmatch(pattern, topic):
            return doc
    raise AssertionError(f"{topic} is not in docs/topics.md")


async def _collect(sub: aiomqtt.Client, timeout_s: float = 5.0) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout_s):
        async for msg in sub.messages:
            if msg.topic.value == END:
                return got
            got.append(msg)
    raise AssertionError("unreachable")


async def check_delivery(port: int) -> None:
    topics = documented_topics()
    async with aiomqtt.Client("127.0.0.1", port, identifier="doc-publisher") as pub:
        for topic, (qos, retain) in topics.items():
            await pub.publish(topic, b"before", qos=qos, retain=retain)
        async with aiomqtt.Client("127.0.0.1", port, identifier="doc-subscriber") as sub:
            granted = await sub.subscribe(f"{PREFIX}/#", qos=1)
            assert list(granted) == [1]
            await pub.publish(END, b"", qos=1)
            first = await _collect(sub)
            retained = sorted(t for t, (_, r) in topics.items() if r)
            assert sorted(m.topic.value for m in first) == retained  # each once, nothing else
            for m in first:
                assert (m.retain, m.qos, m.payload) == (True, min(topics[m.topic.value][0], 1), b"before")
            for topic, (qos, retain) in topics.items():
                await pub.publish(topic, b"live", qos=qos, retain=retain)
            await pub.publish(END, b"", qos=1)
            live = await _collect(sub)
            assert sorted(m.topic.value for m in live) == sorted(topics)
            for m in live:
                assert (m.retain, m.qos, m.payload) == (False, min(topics[m.topic.value][0], 1), b"live"), (
                    m.topic
                )


def test_docs_tables_are_read() -> None:
    topics = documented_topics()
    assert topics[f"{PREFIX}/{GATEWAY}/tracks"] == (0, False)
    assert topics[f"{PREFIX}/{GATEWAY}/reports/{NAME}"] == (0, False)
    assert topics[f"{PREFIX}/{GATEWAY}/health/{NAME}"] == (1, True)
    assert topics[f"{PREFIX}/{GATEWAY}/status"] == (1, True)
    assert topics[f"{PREFIX}/{GATEWAY}/authority"] == (1, True)
    assert topics[f"{PREFIX}/{GATEWAY}/cue/command"] == (1, False)
    assert topics[f"{PREFIX}/{GATEWAY}/score"] == (0, False)
    assert topics[f"{PREFIX}/truth"] == (0, False)
    assert topics[f"{PREFIX}/{GATEWAY}/lane/{NAME}/authority"] == (1, False)
    assert topics[f"{PREFIX}/{GATEWAY}/lane/{NAME}/cue"] == (1, False)
    assert len(topics) == 15


async def test_embedded_broker_delivers_as_documented() -> None:
    async with EmbeddedBroker(0) as broker:
        assert broker.kind == "mosquitto"
        await check_delivery(broker.port)


def mosquitto_listening_on_loopback(pid: int, port: int) -> bool:
    # 0100007F: 127.0.0.1 in /proc/net/tcp's little-endian hex; state 0A: LISTEN.
    listen = Path("/proc/net/tcp").read_text()
    exe = Path(f"/proc/{pid}/exe").resolve().name
    return exe == "mosquitto" and re.search(rf"0100007F:{port:04X} 00000000:0000 0A", listen) is not None


async def test_child_on_loopback_on_a_free_port_and_gone_after_exit() -> None:
    # A port in use: the next broker takes another.
    async with EmbeddedBroker(0) as taken, EmbeddedBroker(taken.port) as broker:
        assert broker.port != taken.port
        pid = broker.pid
        assert pid is not None
        assert mosquitto_listening_on_loopback(pid, broker.port)
    assert not Path(f"/proc/{pid}").exists()  # noqa: ASYNC240  # a stat of procfs, instant


async def test_clear_errors_when_mosquitto_is_missing_or_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.outputs.broker.find_mosquitto", lambda: None)
    with pytest.raises(ConfigError, match="apt-get install mosquitto"):
        async with EmbeddedBroker(0):
            pass
    fake = tmp_path / "mosquitto"
    fake.write_text("#!/bin/sh\necho 'Error: Unable to open log file' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(TransportError, match=r"exited with 3 .*Unable to open log file"):
        async with EmbeddedBroker(0, exe=str(fake)):
            pass


def test_mosquitto_is_found() -> None:
    assert find_mosquitto() is not None, "run ./scripts/test, which installs mosquitto"

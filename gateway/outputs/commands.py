"""The cue path's own MQTT connection for operator commands (issue 23 §1)."""

from __future__ import annotations

import re

from gateway.outputs.session import MqttSession
from gateway.sections.mqtt import MqttConfig

#: An operator identity that can name a lane: one MQTT topic level, the broker's
#: username (the certificate CN); no wildcard, no ``/`` (MQTT 3.1.1 §4.7.1).
LANE_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

__all__ = ["LANE_ID", "command_session", "lane_session"]


def command_session(config: MqttConfig, gateway_id: str, *, port: int | None = None) -> MqttSession:
    """The operator-command connection (``[mqtt] command_connection``, issue 23 §1).

    A second MQTT connection with its own client id (``{client_id}-cmd``) and
    its own persistent session, used by the cue path alone: it subscribes the
    two command topics and publishes what the cue path publishes. The broker
    keeps one delivery queue per client and delivers it in order on one TCP
    connection (MQTT 3.1.1 §4.6), so on the main connection a HOLD would wait
    behind every track, report and partner message the gateway subscribes to
    or sends; here it waits only behind other commands.

    Its receive buffer is pinned to ``command_rcvbuf_bytes``: the kernel then
    holds at most that much of a command flood in front of a HOLD (autotuned,
    loopback grows it to megabytes, tens of thousands of small messages), and
    the rest waits in the broker, where ``max_queued_messages`` bounds it and
    drops the excess (deploy/mosquitto/hilgw.conf). It does not announce the
    gateway's ``status``: that is the main session's, and a will here would
    say "offline" for a gateway that is up.
    """
    return _command_reader(config, gateway_id, "cmd", port)


def lane_session(
    config: MqttConfig, gateway_id: str, identity: str, *, port: int | None = None
) -> MqttSession:
    """The connection that reads one operator's command lane (docs/cue-path.md §12).

    Its own client id (``{client_id}-lane-{identity}``) and persistent session,
    so the broker keeps one delivery queue for this operator alone: a flood
    published under operator A's identity is queued and delivered on A's lane
    connection, never in front of operator B's HOLD (mosquitto delivers in
    order per subscriber connection). Shed like the command connection; it
    publishes nothing (the cue path's outputs go on the command connection).
    """
    if not LANE_ID.match(identity):
        raise ValueError(f"operator id {identity!r} cannot name a lane (letters, digits, _ . @ -)")
    return _command_reader(config, gateway_id, f"lane-{identity}", port)


def _command_reader(config: MqttConfig, gateway_id: str, suffix: str, port: int | None) -> MqttSession:
    """A command-reading session: its own client id ``{client_id}-{suffix}``,
    no status announcement, a pinned receive buffer and flood shedding."""
    base = config.client_id or f"hilgw-{gateway_id}"
    return MqttSession(
        config,
        gateway_id,
        port=port,
        client_id=f"{base}-{suffix}",
        announce=False,
        rcvbuf_bytes=config.command_rcvbuf_bytes,
        shed_above_per_s=config.command_shed_above_per_s,
    )

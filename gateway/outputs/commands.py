"""The cue path's own MQTT connection for operator commands (issue 23 §1)."""

from __future__ import annotations

from gateway.outputs.session import MqttSession
from gateway.sections.mqtt import MqttConfig

__all__ = ["command_session"]


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
    base = config.client_id or f"hilgw-{gateway_id}"
    return MqttSession(
        config,
        gateway_id,
        port=port,
        client_id=f"{base}-cmd",
        announce=False,
        rcvbuf_bytes=config.command_rcvbuf_bytes,
        shed_above_per_s=config.command_shed_above_per_s,
    )

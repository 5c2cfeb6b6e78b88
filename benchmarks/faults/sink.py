"""A QoS 1 subscriber in its own process (paho, reconnects by itself): records
the sequence numbers it receives on one topic filter and writes them, one per
line, to OUT when it receives ``stop`` on the control topic or SIGTERM.

    python -m benchmarks.faults.sink PORT TOPIC OUT

Payloads start with ``KIND:SEQ`` (ASCII); each line written is ``KIND SEQ``;
a payload ``end:`` on TOPIC ends it too
(MQTT keeps the order of one publisher's QoS 1 messages on one topic).
Kept in a process of its own so that its receive work does not share the
publisher's event loop.
"""

from __future__ import annotations

import signal
import sys
import threading

import paho.mqtt.client as mqtt


def main() -> None:
    port, topic, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    got: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        client.subscribe([(topic, 1), ("faults/control", 1)])  # again on every connect

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == "faults/control":
            if msg.payload == b"stop":
                done.set()
            return
        if msg.payload.startswith(b"end:"):  # the publisher's last message: all before it arrived
            done.set()
            return
        got.append(msg.payload.split(b" ", 1)[0])

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="faults-sink", clean_session=False)
    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.reconnect_delay_set(0.05, 0.5)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    client.connect_async("127.0.0.1", port, keepalive=5)
    client.loop_start()
    # Ready only once subscribed: what is published before would not reach us.
    subscribed.wait(30)
    print("ready", flush=True)
    done.wait(3600)
    client.loop_stop()
    with open(out, "wb") as f:
        for p in got:
            f.write(p.replace(b":", b" ") + b"\n")


if __name__ == "__main__":
    main()

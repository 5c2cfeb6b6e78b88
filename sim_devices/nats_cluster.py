"""A NATS JetStream cluster on 127.0.0.1 for benches and tests (docs/federation.md).

Starts ``nats-server`` (Debian package ``nats-server``, 2.9.x) ``n`` times, each
with its own client, cluster-route and MQTT ports (free ports), its own
JetStream store under a work directory, and routes to all the others. Site
and theatre gateways reach it over its MQTT 3.1.1 listeners, so a gateway
speaks the same aiomqtt code path to mosquitto and to the cluster; MQTT
sessions, retained messages and QoS 1 flows live in JetStream streams
replicated across the nodes, which is what lets a client fail over to
another node without losing what it was sent.

    cluster = NatsCluster(tmp_dir, nodes=3)
    cluster.start()                # returns once every node answers and a leader exists
    cluster.mqtt_hosts             # ["127.0.0.1:p1", "127.0.0.1:p2", "127.0.0.1:p3"]
    cluster.kill(0); cluster.restart(0)
    cluster.stop()

``client_tls`` puts TLS on the nodes' client listeners (the ``[nats]`` fast
path; the MQTT listeners and the routes stay plain on 127.0.0.1) and
``users`` requires a user name and password of every client, NATS and MQTT
alike (nats-server's ``authorization`` block covers both).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NatsCluster", "NatsNode", "NatsServerTls", "nats_server_path"]


def nats_server_path() -> str | None:
    return shutil.which("nats-server")


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: every socket stays bound until all are
    chosen, so the kernel cannot hand the same port out twice (two nodes on
    one port: one dies at start and the cluster never reaches quorum)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class NatsServerTls:
    """TLS of the client listeners: the server's certificate and key, and the
    CA its clients' certificates must chain to (``verify``: required)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    verify: bool = True


def _quote(value: object) -> str:
    """A nats-server config string (JSON's quoting is a subset of its own)."""
    import json

    return json.dumps(str(value))


def _mqtt_connack(port: int, budget_s: float, user: tuple[str, str] | None = None) -> bool:
    """One MQTT 3.1.1 connect/disconnect to ``127.0.0.1:port``: True on CONNACK."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Event()
    ok: list[bool] = []

    def on_connect(client: paho.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        ok.append(not getattr(rc, "is_failure", bool(rc)))
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"nats-cluster-probe-{port}")
    client.on_connect = on_connect
    if user is not None:
        client.username_pw_set(*user)
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    try:
        done.wait(max(0.1, min(budget_s, 15.0)))
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(ok and ok[0])


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    monitor_port: int
    store: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """``nodes`` nats-server processes joined in one JetStream cluster, all on 127.0.0.1."""

    def __init__(
        self,
        work: Path,
        nodes: int = 3,
        *,
        mqtt_replicas: int | None = None,
        client_tls: NatsServerTls | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        exe = nats_server_path()
        if exe is None:
            raise RuntimeError("nats-server is not installed (Debian: apt install nats-server)")
        self.exe = exe
        self.work = work
        self.replicas = mqtt_replicas or min(3, nodes)
        self.client_tls = client_tls
        #: user -> password, for NATS and MQTT clients; None: no authorization.
        self.users = dict(users) if users else None
        self.nodes = self._plan(nodes)

    def _plan(self, nodes: int) -> list[NatsNode]:
        ports = _free_ports(4 * nodes)
        return [
            NatsNode(
                f"n{i + 1}",
                client_port=ports[4 * i],
                cluster_port=ports[4 * i + 1],
                mqtt_port=ports[4 * i + 2],
                monitor_port=ports[4 * i + 3],
                store=self.work / f"n{i + 1}" / "store",
                conf=self.work / f"n{i + 1}" / "nats.conf",
            )
            for i in range(nodes)
        ]

    @property
    def mqtt_hosts(self) -> list[str]:
        return [f"127.0.0.1:{n.mqtt_port}" for n in self.nodes]

    @property
    def nats_servers(self) -> list[str]:
        """The nodes' core NATS client listeners (the fast path, gateway/federation/fastpath.py)."""
        return [f"127.0.0.1:{n.client_port}" for n in self.nodes]

    def _write(self, node: NatsNode) -> None:
        node.store.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats-route://127.0.0.1:{o.cluster_port}" for o in self.nodes if o is not node)
        cluster = ""
        if len(self.nodes) > 1:
            cluster = (
                f"cluster {{\n  name: hilgw\n  listen: 127.0.0.1:{node.cluster_port}\n"
                f"  routes: [{routes}]\n}}\n"
            )
        security = ""
        if (t := self.client_tls) is not None:
            security += (
                f"tls {{\n  cert_file: {_quote(t.cert_file)}\n  key_file: {_quote(t.key_file)}\n"
                f"  ca_file: {_quote(t.ca_file)}\n  verify: {str(t.verify).lower()}\n  timeout: 5\n}}\n"
            )
        if self.users:
            users = self.users.items()
            entries = ", ".join(f"{{user: {_quote(u)}, password: {_quote(p)}}}" for u, p in users)
            security += f"authorization {{\n  users: [{entries}]\n}}\n"
        node.conf.write_text(
            f"server_name: {node.name}\n"
            f"{security}"
            f"listen: 127.0.0.1:{node.client_port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            f"jetstream {{\n  store_dir: {node.store}\n  max_memory_store: 268435456\n"
            f"  max_file_store: 2147483648\n}}\n"
            f"{cluster}"
            # MQTT sessions and QoS 1 messages are JetStream streams: replicate
            # them so a node's loss loses nothing a client was sent.
            f"mqtt {{\n  listen: 127.0.0.1:{node.mqtt_port}\n  stream_replicas: {self.replicas}\n"
            f'  ack_wait: "5s"\n}}\n'
        )

    def start(self, timeout_s: float = 60.0, attempts: int = 3) -> None:
        """Start every node; return once the cluster takes an MQTT session.

        A node that dies at start (a port taken meanwhile by another process)
        fails the attempt with its log; the cluster is then started again on
        fresh ports, up to ``attempts`` times."""
        for attempt in range(1, attempts + 1):
            for node in self.nodes:
                self._write(node)
                self._spawn(node)
            try:
                self.wait_ready(timeout_s)
                return
            except (TimeoutError, RuntimeError):
                self.stop()
                if attempt == attempts:
                    raise
                self.nodes = self._plan(len(self.nodes))

    def _log_tail(self, node: NatsNode, lines: int = 5) -> str:
        try:
            text = (node.conf.parent / "nats.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def _spawn(self, node: NatsNode) -> None:
        log = (node.conf.parent / "nats.log").open("ab")
        node.proc = subprocess.Popen(
            [self.exe, "-c", str(node.conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Every started node runs and listens on MQTT, the cluster has a
        JetStream leader, and an MQTT client gets a CONNACK from every node.

        The first MQTT connection of an account creates its replicated
        session and message streams, which takes seconds on a busy machine;
        doing it here keeps that out of the callers' own connect budgets."""
        deadline = time.monotonic() + timeout_s
        pending = [n for n in self.nodes if n.proc is not None]
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if n.proc is not None and not n.running]
            if dead:
                raise RuntimeError(
                    "; ".join(f"NATS node {n.name} exited at start: {self._log_tail(n)}" for n in dead)
                )
            if all(_listening(n.mqtt_port) for n in pending) and self._has_leader():
                user = next(iter(self.users.items())) if self.users else None
                pending = [
                    n for n in pending if not _mqtt_connack(n.mqtt_port, deadline - time.monotonic(), user)
                ]
                if not pending:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"NATS cluster not ready in {timeout_s} s; logs under {self.work}")

    def _has_leader(self) -> bool:
        import json
        import urllib.request

        for n in self.nodes:
            if not n.running:
                continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{n.monitor_port}/jsz", timeout=0.5) as r:
                    info = json.load(r)
            except (OSError, ValueError):
                continue
            meta = info.get("meta_cluster") or {}
            if len(self.nodes) == 1 or meta.get("leader"):
                return True
        return False

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (a crash: no goodbye to clients or routes)."""
        p = self.nodes[i].proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()

    def restart(self, i: int, timeout_s: float = 30.0) -> None:
        self.kill(i)
        self._spawn(self.nodes[i])
        deadline = time.monotonic() + timeout_s
        while not _listening(self.nodes[i].mqtt_port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS node {self.nodes[i].name} did not come back in {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.terminate()
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(5)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait()

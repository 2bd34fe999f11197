"""Several embedded KRaft nodes on loopback as one replicated cluster.

``brigade kafka start --brokers 3`` runs three broker+controller nodes (one quorum of
three voters) with replication 3 and ``min.insync.replicas`` 2, so any one node can die
without losing an acknowledged write. Node ``i`` (from 0) listens on ``broker_port + 2i``
with its controller on ``controller_port + 2i``; its files live under
``<data_dir>/kafka/node-<i+1>``. One node is exactly the single embedded broker.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from brigade.errors import KafkaError
from brigade.kafka.local import LocalKafka, _cluster_id
from brigade.net import port_taken
from brigade.settings import Settings


@dataclass(frozen=True, kw_only=True)
class LocalCluster:
    """The embedded broker nodes described by settings."""

    nodes: tuple[LocalKafka, ...]

    @classmethod
    def from_settings(cls, settings: Settings, *, brokers: int | None = None) -> LocalCluster:
        """The cluster of ``brokers`` nodes (default ``kafka.brokers``) under the data dir."""
        count = brokers or settings.kafka.brokers
        if count == 1:
            return cls(nodes=(LocalKafka.from_settings(settings),))
        return cls.on_ports(
            settings.path("kafka"), count=count, port=settings.kafka.broker_port,
            controller_port=settings.kafka.controller_port, heap=settings.kafka.broker_heap,
        )

    @classmethod
    def on_ports(cls, data_dir: Path, *, count: int, port: int, controller_port: int,
                 heap: str = "384m") -> LocalCluster:
        """``count`` nodes from ``port``/``controller_port`` upwards in steps of two."""
        ids = range(1, count + 1)
        voters = ",".join(f"{i}@127.0.0.1:{controller_port + 2 * (i - 1)}" for i in ids)
        cluster_id = _stored_cluster_id(data_dir)
        return cls(nodes=tuple(
            LocalKafka(data_dir=data_dir / f"node-{i}", port=port + 2 * (i - 1),
                       controller_port=controller_port + 2 * (i - 1), heap=heap, node_id=i,
                       voters=voters, replication=min(count, 3), cluster_id=cluster_id)
            for i in ids
        ))

    @property
    def bootstrap(self) -> str:
        """Every node's ``host:port``, comma-separated, as clients take it."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        """The node with KRaft id ``node_id``."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KafkaError(f"no broker with node id {node_id}")

    def pids(self) -> list[int]:
        """The pids of the nodes that run."""
        return [pid for node in self.nodes if (pid := node.pid()) is not None]

    def start(self, *, timeout_s: float = 120.0) -> None:
        """Launch every node that is not running, then wait until all of them answer."""
        for node in self.nodes:
            if node.pid() is None:
                node.launch()
        deadline = time.monotonic() + timeout_s
        try:
            for node in self.nodes:
                node.wait_ready(timeout_s=max(1.0, deadline - time.monotonic()), pid=node.pid())
            self._wait_for_brokers(deadline)
        except KafkaError:
            self.stop()
            raise

    def stop(self) -> bool:
        """Stop every node cleanly; whether any was running."""
        return any([node.stop() for node in reversed(self.nodes)])

    def _wait_for_brokers(self, deadline: float) -> None:
        # A node answers metadata before the others registered with the quorum; topics with
        # replication 3 can only be created once every broker is known.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while len(admin.list_topics(timeout=5).brokers) < len(self.nodes):
            if time.monotonic() > deadline:
                raise KafkaError(f"only some of {len(self.nodes)} brokers joined the cluster")
            time.sleep(0.2)


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports, for a cluster's nodes.

    Taken below the kernel's ephemeral range (from 32768), so no client socket takes one
    of them while its broker is down for a moment.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000, 2)
        if all(not port_taken("127.0.0.1", base + i) for i in range(count)):
            return base
    raise KafkaError(f"no run of {count} free loopback ports")


def _stored_cluster_id(data_dir: Path) -> str:
    # Every node's storage must carry the same cluster id; keep it beside the nodes so a
    # node formatted later (or again) joins the same cluster.
    path = data_dir / "cluster-id"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(_cluster_id())
    return path.read_text().strip()

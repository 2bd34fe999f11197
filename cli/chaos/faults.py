"""Carrying out the fault schedule against a running chaos stack, and recording what was done."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient
from rich.console import Console

from brigade.errors import BrigadeError
from brigade.kafka.topology import Topology
from cli.chaos.schedule import PlannedFault
from cli.chaos.stack import ChaosStack
from projections.logread import log_end_offsets


@dataclass(frozen=True, kw_only=True)
class InjectedFault:
    """One fault as carried out: when (seconds into the run), what, to whom, and what came of it."""

    at_s: float
    kind: str
    target: str
    detail: str

    def to_json(self) -> dict[str, object]:
        """The report's form of the fault."""
        return {"at_s": round(self.at_s, 1), "kind": self.kind, "target": self.target, "detail": self.detail}


class Injector:
    """Runs the schedule in a background thread from ``started`` (a ``time.monotonic`` value)."""

    def __init__(self, stack: ChaosStack, schedule: list[PlannedFault], *, started: float,
                 console: Console) -> None:
        self._stack = stack
        self._console = console
        self._schedule = schedule
        self._started = started
        self._stop = threading.Event()
        self._leader: int | None = None
        self.done: list[InjectedFault] = []
        self._thread = threading.Thread(target=self._run, name="chaos-faults", daemon=True)

    def start(self) -> None:
        """Begin the schedule."""
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until every fault is done; whether it is."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Skip whatever is left of the schedule."""
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        for fault in self._schedule:
            if self._stop.wait(max(0.0, self._started + fault.at_s - time.monotonic())):
                return
            try:
                detail = self._inject(fault)
            except BrigadeError as exc:
                detail = f"failed: {exc}"
            done = InjectedFault(at_s=time.monotonic() - self._started, kind=fault.kind,
                                 target=fault.target, detail=detail)
            self.done.append(done)
            self._console.print(f"{done.at_s:7.1f}s  {done.kind} {done.target}: {done.detail}")

    def _inject(self, fault: PlannedFault) -> str:
        if fault.kind in ("kill-worker", "kill-processor", "kill-api"):
            pid = self._stack.supervisor.kill(fault.target)
            return f"SIGKILL pid {pid}" if pid is not None else "was down (restarting)"
        if fault.kind == "stop-broker":
            node = self._stack.cluster.nodes[0]
            return "stopped" if node.stop() else "was not running"
        if fault.kind == "start-broker":
            self._stack.cluster.nodes[0].start()
            return "started"
        if fault.kind == "kill-leader":
            return self._kill_leader()
        return self._restart_leader()

    def _kill_leader(self) -> str:
        topic = Topology(self._stack.settings).job_events
        partition, leader = busiest_partition_leader(self._stack.settings.kafka.bootstrap, topic,
                                                     log_end_offsets(self._stack.settings, topic))
        self._leader = leader
        node = self._stack.cluster.node(leader)
        pid = node.pid()
        node.kill()
        return f"SIGKILL node {leader} (pid {pid}), leader of {topic}[{partition}]"

    def _restart_leader(self) -> str:
        if self._leader is None:
            return "no node was killed"
        self._stack.cluster.node(self._leader).start()
        return f"node {self._leader} started"


def busiest_partition_leader(bootstrap: str, topic: str, ends: dict[int, int]) -> tuple[int, int]:
    """``(partition, leader node id)`` of the partition of ``topic`` holding the most messages."""
    partition = max(ends, key=lambda p: ends[p])
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic]
    leader = metadata.partitions[partition].leader
    if leader < 0:
        raise BrigadeError(f"{topic}[{partition}] has no leader")
    return partition, leader

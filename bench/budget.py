"""The per-job budget of a running stack: CPU per process, records per topic, latency per hop.

CPU comes from ``/proc/<pid>/stat`` (user + system time) of every process whose working
directory is the stack's home (``brigade up`` starts the broker, the API, the processors,
the workers and the emulator there), read before and after a phase. Records come from the
high watermarks of every topic of the stack (changelogs included), read before and after
the same phase. Latency per hop comes from the timestamps the producers of each record put
on it (Kafka ``CreateTime``): the command written by the API, the work item written by the
processor, the ``succeeded`` outcome written by the worker, and the ``JobSucceeded`` event
written by the processor, plus the client's own clock when it sent the job and when it saw
the result. All processes share one machine clock, so differences between them are meaningful.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from bench.report import percentile
from brigade.kafka.clients import make_admin, make_consumer
from brigade.kafka.lag import end_offsets
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from schemas.codec import Codec
from schemas.records import JobSucceeded, SubmitJob, WorkItem, WorkOutcome

_TICKS = os.sysconf("SC_CLK_TCK")

# First match wins: the command line of each stack process names its role.
_ROLES = (
    ("broker", ("java",)),
    ("emulator", ("model-server", "--emulate")),
    ("model server", ("model-server",)),
    ("api+projector", ("cli", "api")),
    ("processors", ("cli", "processors")),
    ("workers", ("cli", "workers")),
    ("supervisor (up)", ("cli", "up")),
)


def _role(argv: list[str]) -> str:
    if argv and argv[0].endswith("java"):
        return "broker"
    for role, words in _ROLES[1:]:
        if all(w in argv for w in words):
            return role
    return "other: " + " ".join(argv[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    # Fields after the command name (which may contain spaces) start at the state, field 3.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def stack_cpu(home: Path) -> dict[str, float]:
    """CPU seconds used so far by each role of the stack living in ``home``."""
    home = home.resolve()
    totals: dict[str, float] = defaultdict(float)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            if cwd != home and home not in cwd.parents:
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            totals[_role([a for a in argv if a])] += cpu_seconds(int(entry.name))
        except (FileNotFoundError, PermissionError, ProcessLookupError, IndexError):
            continue  # exited while we looked, or not ours
    return dict(totals)


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class CpuPhase:
    """CPU used by each process of a stack (and by this load generator) during one phase."""

    home: Path
    before: dict[str, float] = field(default_factory=dict)
    self_before: float = 0.0
    load_before: float = 0.0

    def start(self) -> None:
        """Snapshot the counters at the start of the phase."""
        self.before, self.self_before = stack_cpu(self.home), _self_cpu()
        self.load_before = os.getloadavg()[0]

    def rows(self, jobs: int) -> list[dict[str, Any]]:
        """One row per role: CPU seconds in the phase and milliseconds of CPU per job."""
        after = stack_cpu(self.home)
        used = {role: after[role] - self.before.get(role, 0.0) for role in after}
        used["load generator (bench: SDK + polling)"] = _self_cpu() - self.self_before
        total = sum(used.values())
        rows = [{"process": role, "cpu_s": seconds, "cpu_ms_per_job": seconds * 1000 / jobs,
                 "share": seconds / total if total else 0.0}
                for role, seconds in sorted(used.items(), key=lambda kv: -kv[1])]
        rows.append({"process": "total", "cpu_s": total, "cpu_ms_per_job": total * 1000 / jobs, "share": 1.0})
        return rows


@dataclass(frozen=True)
class ModelCalls:
    """What a model server reports of its model calls so far (``/metrics``)."""

    calls: float
    texts: float
    seconds: float  # inside the model

    def __sub__(self, earlier: ModelCalls) -> ModelCalls:
        return ModelCalls(self.calls - earlier.calls, self.texts - earlier.texts,
                          self.seconds - earlier.seconds)


def model_calls(base_url: str) -> ModelCalls:
    """Model calls, texts and seconds inside the model of the built-in model server at ``base_url``."""
    values: dict[str, float] = {}
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in ("brigade_model_batch_size_count", "brigade_model_batch_size_sum",
                        "brigade_model_inference_seconds_sum"):
                values[name] = float(value)
    return ModelCalls(values.get("brigade_model_batch_size_count", 0.0),
                      values.get("brigade_model_batch_size_sum", 0.0),
                      values.get("brigade_model_inference_seconds_sum", 0.0))


def records_written(settings: Settings) -> dict[str, int]:
    """Records each topic of the stack holds so far (its partitions' high watermarks summed)."""
    names = [t for t in make_admin(settings).list_topics(timeout=10).topics
             if t.startswith(settings.kafka.topic_prefix)]
    totals: dict[str, int] = defaultdict(int)
    for (topic, _), high in end_offsets(settings.kafka.bootstrap, names).items():
        totals[topic] += high
    return dict(totals)


def record_rows(before: dict[str, int], after: dict[str, int], jobs: int) -> list[dict[str, Any]]:
    """Records written per topic between two ``records_written`` readings, per job; total last."""
    written = {t: n - before.get(t, 0) for t, n in after.items() if n > before.get(t, 0)}
    rows: list[dict[str, Any]] = [{"topic": t, "records": n, "per_job": n / jobs}
                                  for t, n in sorted(written.items(), key=lambda kv: -kv[1])]
    total = sum(written.values())
    return [*rows, {"topic": "total", "records": total, "per_job": total / jobs}]


# ---------------------------------------------------------------------------------------
# Latency per hop


HOPS = (
    ("client → command written (API)", "sent", "command"),
    ("command → work item written (processor)", "command", "work"),
    ("model call (worker-measured HTTP call)", None, None),
    # A call within the pool's announce window has no `started` outcome (its start travels
    # with the result), so the worker is one hop: the work item's read to the result's write.
    ("work item → succeeded outcome written, minus model (worker, whole)", "work", "succeeded"),
    ("outcome → JobSucceeded written (processor)", "succeeded", "terminal"),
    ("JobSucceeded → the waiting client has it (API event tail)", "terminal", "seen"),
    ("total, client send → client sees succeeded", "sent", "seen"),
)


def _topics(settings: Settings, lanes: Iterable[str]) -> list[str]:
    topology = Topology(settings)
    names = set(make_admin(settings).list_topics(timeout=10).topics)
    work = [t for t in names if any(t.startswith(settings.topic("work.")) and t.endswith("." + lane)
                                    for lane in lanes)]
    return [topology.commands, topology.outcomes, topology.job_events, *work]


def record_times(settings: Settings, job_ids: set[str], lanes: Iterable[str]) -> dict[str, dict[str, float]]:
    """Per job id, the CreateTime (epoch seconds) of its command, work item, outcomes and terminal event."""
    codec = Codec()
    consumer = make_consumer(settings, f"bench-budget-{uuid.uuid4().hex[:8]}",
                             **{"enable.partition.eof": True})
    times: dict[str, dict[str, float]] = defaultdict(dict)
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(t, p, OFFSET_BEGINNING)
                      for t in _topics(settings, lanes) for p in metadata[t].partitions]
        consumer.assign(partitions)
        pending = {(tp.topic, tp.partition) for tp in partitions}
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic(), message.partition()))
                continue
            _note(codec, message.value(), message.timestamp()[1] / 1000.0, job_ids, times)
    finally:
        consumer.close()
    return dict(times)


def _note(codec: Codec, raw: bytes | None, at: float, job_ids: set[str],
          times: dict[str, dict[str, float]]) -> None:
    if raw is None:
        return
    try:
        record = codec.decode(raw)
    except Exception:  # noqa: BLE001 - a record this reader cannot place is not part of the budget
        return
    if isinstance(record, SubmitJob):
        job, hop = record.spec.job_id, "command"
    elif isinstance(record, WorkItem):
        job, hop = record.spec.job_id, "work"
    elif isinstance(record, WorkOutcome) and record.kind == "succeeded":
        job, hop = record.job_id, record.kind
    elif isinstance(record, JobSucceeded):
        job, hop = record.envelope.job_id, "terminal"
        if job in job_ids:
            times[job]["model_ms"] = record.latency_ms
            times[job]["batch_size"] = record.batch_size
    else:
        return
    if job in job_ids:
        times[job].setdefault(hop, at)  # the first write; a retry's is not this hop's cost


def hop_rows(client_times: dict[str, tuple[float, float]],
             record: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """p50/p99 of each hop in milliseconds over the jobs that have every timestamp."""
    spans: dict[str, list[float]] = defaultdict(list)
    for job, (sent, seen) in client_times.items():
        t = {**record.get(job, {}), "sent": sent, "seen": seen}
        if not all(k in t for k in ("command", "work", "succeeded", "terminal", "model_ms")):
            continue
        for name, start, end in HOPS:
            if start is None:
                spans[name].append(t["model_ms"])
            elif end == "succeeded":
                spans[name].append((t[end] - t[start]) * 1000 - t["model_ms"])
            else:
                assert end is not None
                spans[name].append((t[end] - t[start]) * 1000)
    return [{"hop": name, "jobs": len(spans[name]), "p50_ms": percentile(spans[name], 0.5),
             "p99_ms": percentile(spans[name], 0.99),
             "mean_ms": sum(spans[name]) / len(spans[name]) if spans[name] else float("nan")}
            for name, _, _ in HOPS]


__all__ = ["HOPS", "CpuPhase", "hop_rows", "record_times", "stack_cpu"]

"""Whole-stack benchmarks, each against a fresh ``brigade up`` on this machine.

(a) orchestration ceiling: no-op jobs (emulator at zero latency) submitted with the
    producer SDK, until every job is projected as succeeded;
(b) interactive end-to-end latency minus model time, at a steady low rate;
(c) batching efficiency with the real model: embeddings/s through the stack divided by the
    raw model's embeddings/s in a tight loop, measured in the same run;
(d) the same no-op workload through Celery + Redis (acks_late), reported as a ratio;
(e) the per-job budget: CPU per job of each process and records per job on each topic
    during (a), and the latency of each hop (command → work item → model → succeeded →
    terminal event → client) during (b), from the records' own timestamps (``bench.budget``);
(f) the idle cost: CPU of each process of a warmed-up stack with nothing to do, which every
    job pays at low rates (batching (c) runs at ~75 jobs/s).

    .venv/bin/python -m bench.bench_stack [--jobs 3000] [--embeddings 1000] [--only idle]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import TopicPartition

from bench.bench_celery import celery_jobs_per_second
from bench.budget import CpuPhase, hop_rows, model_calls, record_rows, record_times, records_written
from bench.report import emit, percentile
from bench.stack import EMULATED, RunningStack, embedded_stack
from brigade.kafka.clients import make_consumer
from brigade.kafka.topology import Topology
from ingress.client import Client
from ingress.producer import JobProducer
from projections.backends import open_clickhouse
from schemas.codec import Codec
from schemas.records import JobSucceeded


def _succeeded(stack: RunningStack) -> int:
    ch = open_clickhouse(stack.settings)
    try:
        rows = ch.query("SELECT count() FROM jobs FINAL WHERE status = 'succeeded'")
    finally:
        ch.close()
    return int(rows[0][0])


class TerminalCounter:
    """Counts ``JobSucceeded`` records written to job-events after it was made.

    The benchmark waits on this first and asks ClickHouse only at the end: a ``FINAL`` count
    every 250 ms for the whole run cost the load generator, on the stack's two cores, ~35 ms
    of CPU a poll (a tenth of a no-op job's budget, more for longer runs).
    """

    def __init__(self, stack: RunningStack) -> None:
        topic = Topology(stack.settings).job_events
        self._consumer = make_consumer(stack.settings, f"bench-drain-{uuid.uuid4().hex[:8]}")
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # Explicit end offsets, read now: OFFSET_END would be resolved at the first fetch,
        # after records of this run may already be written.
        ends = {p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        self._consumer.assign([TopicPartition(topic, p, end) for p, end in ends.items()])
        self._codec = Codec()
        self.seen = 0

    def wait_for(self, count: int, deadline: float) -> None:
        """Block until ``count`` successes were written, or raise ``TimeoutError`` at ``deadline``."""
        while self.seen < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {self.seen} of {count} jobs succeeded on the log")
            for message in self._consumer.consume(1000, timeout=0.5):
                value = message.value()
                if message.error() is None and value is not None and self._is_success(value):
                    self.seen += 1

    def _is_success(self, value: bytes) -> bool:
        kind = self._codec.record_type(value)
        if kind is None:  # a header not met yet: decoding it once teaches the codec
            kind = type(self._codec.decode(value))
        return kind is JobSucceeded

    def close(self) -> None:
        """Leave the broker."""
        self._consumer.close()


def _submit_and_drain(stack: RunningStack, texts: list[str], *, model_hint: str | None,
                      timeout_s: float) -> float:
    """Submit ``texts`` through the SDK (batch lane) and return seconds until all are projected."""
    baseline = _succeeded(stack)
    counter = TerminalCounter(stack)
    started = time.perf_counter()
    with JobProducer(settings=stack.settings, tenant_id=stack.tenant_id) as producer:
        body: dict[str, Any] = {"priority": "batch"}
        if model_hint:
            body["modelHint"] = model_hint
        futures = [producer.submit({**body, "input": text}) for text in texts]
        producer.flush(60)
        for future in futures:
            future.result(60)
    deadline = started + timeout_s
    try:
        counter.wait_for(len(texts), deadline)
    finally:
        counter.close()
    while _succeeded(stack) < baseline + len(texts):  # then projected: the projector's window
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {_succeeded(stack) - baseline} of {len(texts)} jobs projected")
        time.sleep(0.05)
    return time.perf_counter() - started


def ceiling(jobs: int, run_id: str) -> dict[str, Any]:
    """(a) no-op jobs/s through the whole stack."""
    with embedded_stack(model_server=False) as stack:
        _submit_and_drain(stack, [f"warm-up {run_id} {i}" for i in range(100)], model_hint=EMULATED,
                          timeout_s=300)
        records_before = records_written(stack.settings)
        cpu = CpuPhase(stack.home)
        cpu.start()
        seconds = _submit_and_drain(stack, [f"noop {run_id} {i}" for i in range(jobs)], model_hint=EMULATED,
                                    timeout_s=900)
        budget = cpu.rows(jobs)
        records = record_rows(records_before, records_written(stack.settings), jobs)
    emit("stack-cpu-budget", f"(e) CPU per no-op job by process ({jobs} jobs, load before "
         f"{cpu.load_before:.2f}, after {os.getloadavg()[0]:.2f})", budget,
         extra={"load_before": cpu.load_before, "load_after": os.getloadavg()[0]})
    emit("stack-records", f"(e) records written per no-op job, by topic ({jobs} jobs)", records)
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds}


def _model_ms(client: Client, job_id: str) -> float:
    for event in client.events(job_id):
        if event["type"] == "JobSucceeded":
            detail = event["detail"]
            return float(detail.get("latencyMs", detail.get("latency_ms", 0.0)))
    return float("nan")


def interactive_latency(rate_per_s: float, seconds: float, run_id: str) -> dict[str, Any]:
    """(b) end-to-end latency of interactive jobs minus the model call, GPU-like emulator."""
    with embedded_stack(model_server=False, batch_latency_ms=20, item_latency_ms=0.5) as stack, \
            Client(stack.url, api_key=stack.api_key) as client:
        seen: dict[str, tuple[float, float]] = {}

        def one(i: int) -> tuple[float, str]:
            sent, started = time.time(), time.perf_counter()
            job = client.submit({"input": f"interactive {run_id} {i}", "priority": "interactive",
                                 "modelHint": EMULATED}, wait=30)
            elapsed = (time.perf_counter() - started) * 1000
            seen[job["jobId"]] = (sent, sent + elapsed / 1000)
            return elapsed, job["jobId"]

        for i in range(20):
            one(-i - 1)
        count = int(rate_per_s * seconds)
        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = []
            for i in range(count):
                futures.append(pool.submit(one, i))
                time.sleep(1 / rate_per_s)  # the load generator's pacing, not synchronisation
            results = [f.result() for f in futures]
        measured = {job_id: seen[job_id] for _, job_id in results}
        hops = hop_rows(measured, record_times(stack.settings, set(measured), ("interactive",)))
        overhead = [total - _model_ms(client, job_id) for total, job_id in results]
        totals = [total for total, _ in results]
    emit("stack-latency-hops", f"(e) interactive latency per hop, {rate_per_s:g} jobs/s "
         f"(load {os.getloadavg()[0]:.2f})", hops)
    return {"jobs": count, "rate_per_s": rate_per_s,
            "e2e_p50_ms": percentile(totals, 0.5), "e2e_p99_ms": percentile(totals, 0.99),
            "minus_model_p50_ms": percentile(overhead, 0.5), "minus_model_p99_ms": percentile(overhead, 0.99)}


def batching_efficiency(embeddings: int, run_id: str) -> dict[str, Any]:
    """(c) real-model embeddings/s through the stack ÷ the raw model's, same batch size."""
    from bench.bench_model import raw_embeddings_per_second, sample_texts

    raw = raw_embeddings_per_second(64, min(embeddings, 1024))  # the default (onnx) backend, as served
    texts = [f"{text} ({run_id} {i})" for i, text in enumerate(sample_texts(embeddings))]
    with embedded_stack(model_server=True) as stack:
        # Distinct warm-up texts: a repeated text would be the same job (same payload hash).
        _submit_and_drain(stack, [f"warm-up {text}" for text in texts[:64]], model_hint=None, timeout_s=300)
        model_url = stack.settings.pools["default"].endpoint.rstrip("/").removesuffix("/v1")
        calls_before = model_calls(model_url)
        cpu = CpuPhase(stack.home)
        cpu.start()
        seconds = _submit_and_drain(stack, texts, model_hint=None, timeout_s=900)
        budget = cpu.rows(embeddings)
        calls = model_calls(model_url) - calls_before
    emit("stack-batching-budget", f"(c) CPU per embedding by process ({embeddings} jobs of one text, "
         f"load before {cpu.load_before:.2f}, after {os.getloadavg()[0]:.2f})", budget,
         extra={"load_before": cpu.load_before, "load_after": os.getloadavg()[0]})
    through = embeddings / seconds
    return {"embeddings": embeddings, "through_brigade_per_s": through, "raw_model_per_s": raw,
            "efficiency": through / raw, "model_calls": calls.calls,
            "mean_batch": calls.texts / calls.calls if calls.calls else 0.0,
            "model_busy_share": calls.seconds / seconds}


def idle_cost(seconds: float, run_id: str) -> list[dict[str, Any]]:
    """(f) percent of a core each process of a warmed-up, idle stack uses."""
    with embedded_stack(model_server=False) as stack:
        _submit_and_drain(stack, [f"warm-up {run_id} {i}" for i in range(100)], model_hint=EMULATED,
                          timeout_s=300)
        cpu = CpuPhase(stack.home)
        cpu.start()
        started = time.perf_counter()
        time.sleep(seconds)  # the window measured, with nothing submitted: not a synchronisation
        elapsed = time.perf_counter() - started
        rows = cpu.rows(1)
    return [{"process": row["process"], "cpu_s": row["cpu_s"], "core_pct": row["cpu_s"] / elapsed * 100}
            for row in rows]


def main() -> None:
    """Run (a) to (d) and (f), and report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--embeddings", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--only", choices=("ceiling", "latency", "batching", "idle"), action="append")
    args = parser.parse_args()
    run_id = str(int(time.time()))
    only = set(args.only or ("ceiling", "latency", "batching", "idle"))
    if "ceiling" in only:
        noop = ceiling(args.jobs, run_id)
        print(f"brigade: {noop['jobs_per_s']:.1f} no-op jobs/s", flush=True)
        celery = celery_jobs_per_second(args.jobs)
        emit("stack-ceiling", "(a)+(d) no-op jobs through the whole stack vs Celery+Redis", [
            {"system": "brigade (SDK → processor → worker → projection)", **noop},
            {"system": "celery+redis, acks_late (peer)", **celery},
        ], extra={"ratio_brigade_over_celery": noop["jobs_per_s"] / celery["jobs_per_s"]})
    if "latency" in only:
        latency = interactive_latency(args.rate, args.seconds, run_id)
        emit("stack-latency", "(b) interactive latency, emulator 20 ms + 0.5 ms/item", [latency])
    if "batching" in only:
        efficiency = batching_efficiency(args.embeddings, run_id)
        emit("stack-batching", "(c) batching efficiency with all-MiniLM-L6-v2", [efficiency])
    if "idle" in only:
        emit("stack-idle", f"(f) CPU of an idle stack, % of a core ({args.idle_seconds:g} s, "
             f"load {os.getloadavg()[0]:.2f})", idle_cost(args.idle_seconds, run_id))


if __name__ == "__main__":
    main()

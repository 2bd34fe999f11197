"""The job processor against the real broker: a processor process, a scripted worker."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from brigade.kafka import topology
from brigade.kafka.clients import make_consumer
from schemas.codec import Codec
from schemas.records import (
    JobDeadLettered,
    JobQueued,
    JobRejected,
    JobRetryScheduled,
    JobStarted,
    JobSucceeded,
    SubmitJob,
)
from testkit.jobs import outcome, spec
from testkit.support import poll_until
from tests.processors.conftest import Stack

STARTUP_S = 60.0  # first test waits for the worker to join the group and recover


def fresh(**fields: object) -> object:
    """A spec with a unique payload (so a unique job id)."""
    return spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC), **fields)  # type: ignore[arg-type]


def now() -> datetime:
    return datetime.now(UTC)


def test_lifecycle_end_to_end(stack: Stack) -> None:
    # Given a submitted job
    s = fresh(priority="interactive")
    stack.client.submit(s)
    queued = stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    assert (queued.pool, queued.lane, queued.attempt) == ("small", "interactive", 1)
    item = poll_until(lambda: [w for _, w in stack.observer.work if w.spec.job_id == s.job_id],
                    what="work item")
    assert item[0].attempt == 1 and item[0].spec == s
    # When the worker starts and succeeds
    stack.client.outcome(outcome(s, "started", lease_ms=30_000, at=now()))
    stack.observer.wait_event(s.job_id, "JobStarted")
    stack.client.outcome(outcome(s, "succeeded", result_inline='{"embedding":[0.5]}', latency_ms=4.0,
                                 model="all-MiniLM-L6-v2", batch_size=2, at=now()))
    done = stack.observer.wait_event(s.job_id, "JobSucceeded")
    # Then the log holds the whole lifecycle, in order, sequence 1..4
    assert isinstance(done, JobSucceeded) and done.result_inline == '{"embedding":[0.5]}'
    events = stack.observer.of(s.job_id)
    assert stack.observer.names(s.job_id) == ["JobSubmitted", "JobQueued", "JobStarted", "JobSucceeded"]
    assert [e.envelope.sequence for e in events] == [1, 2, 3, 4]


def test_retries_land_in_the_right_tier_after_the_right_delay(stack: Stack) -> None:
    s = fresh()
    stack.client.submit(s)
    stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    stack.client.outcome(outcome(s, "started", at=now()))
    stack.observer.wait_event(s.job_id, "JobStarted")
    failed_at = time.time()
    stack.client.outcome(outcome(s, "failed", error_class="rate_limited", error="429", retry_after_ms=2000,
                                 at=now()))
    retry = stack.observer.wait_event(s.job_id, "JobRetryScheduled")
    assert isinstance(retry, JobRetryScheduled) and retry.tier == "5s" and retry.delay_ms == 2000
    poll_until(lambda: [t for t, _ in stack.observer.retry_topics if t.endswith(".retry.5s")], what="timer")
    requeued = stack.observer.wait_event(s.job_id, "JobQueued", count=2, timeout=15)
    waited = time.time() - failed_at
    assert isinstance(requeued, JobQueued) and requeued.reason == "retry" and requeued.attempt == 2
    assert 1.9 <= waited <= 4.5, f"re-queued after {waited:.2f}s, expected ~2s"
    # A transient error without Retry-After: full-jitter backoff (base 0.2s) in the 1s tier.
    stack.client.outcome(outcome(s, "started", 2, at=now()))
    stack.observer.wait_event(s.job_id, "JobStarted", count=2)
    stack.client.outcome(outcome(s, "failed", 2, error_class="transient", error="503", at=now()))
    second = stack.observer.wait_event(s.job_id, "JobRetryScheduled", count=2)
    assert second.tier == "1s" and 0 <= second.delay_ms <= 400
    stack.observer.wait_event(s.job_id, "JobQueued", count=3, timeout=10)


def test_dead_lettering_after_max_attempts(stack: Stack) -> None:
    s = fresh(max_attempts=2)
    stack.client.submit(s)
    for attempt in (1, 2):
        stack.observer.wait_event(s.job_id, "JobQueued", count=attempt, timeout=STARTUP_S)
        stack.client.outcome(outcome(s, "started", attempt, at=now()))
        stack.observer.wait_event(s.job_id, "JobStarted", count=attempt)
        stack.client.outcome(outcome(s, "failed", attempt, error_class="transient", error=f"boom{attempt}",
                                     at=now()))
    dead = stack.observer.wait_event(s.job_id, "JobDeadLettered", timeout=15)
    assert isinstance(dead, JobDeadLettered) and dead.attempts == 2
    assert dead.errors == ["transient: boom1", "transient: boom2"]
    letters = poll_until(lambda: [d for d in stack.observer.dead if d.job_id == s.job_id], what="dlq record")
    letter = letters[0]
    assert letter.attempts == 2 and letter.errors == dead.errors and letter.reason == "max_attempts_exhausted"
    assert Codec().decode(letter.raw).error == "boom2"  # the last input, intact


def test_lease_expiry_requeues_a_job_whose_worker_died(stack: Stack) -> None:
    s = fresh()
    stack.client.submit(s)
    stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    # The worker starts with a 1s lease and then dies: no further outcome.
    stack.client.outcome(outcome(s, "started", lease_ms=1000, at=now()))
    started = stack.observer.wait_event(s.job_id, "JobStarted")
    assert isinstance(started, JobStarted)
    stack.observer.wait_event(s.job_id, "JobLeaseExpired", timeout=10)
    requeued = stack.observer.wait_event(s.job_id, "JobQueued", count=2)
    assert requeued.reason == "lease_expired" and requeued.attempt == 2
    # The dead worker's late result is ignored; the new attempt decides the job.
    stack.client.outcome(outcome(s, "succeeded", 1, at=now()))
    stack.client.outcome(outcome(s, "started", 2, at=now()))
    stack.client.outcome(outcome(s, "succeeded", 2, at=now()))
    done = stack.observer.wait_event(s.job_id, "JobSucceeded")
    assert done.attempt == 2
    assert stack.observer.names(s.job_id).count("JobSucceeded") == 1


def test_cancellation_in_each_state(stack: Stack) -> None:
    queued, running, finished = fresh(), fresh(), fresh()
    for s in (queued, running, finished):
        stack.client.submit(s)
        stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    for s in (running, finished):
        stack.client.outcome(outcome(s, "started", at=now()))
        stack.observer.wait_event(s.job_id, "JobStarted")
    stack.client.outcome(outcome(finished, "succeeded", at=now()))
    stack.observer.wait_event(finished.job_id, "JobSucceeded")
    for s in (queued, running, finished):
        stack.client.cancel(s)
    # Queued: cancelled at once. Running: cancel requested, and the outcome is discarded.
    stack.observer.wait_event(queued.job_id, "JobCancelled")
    stack.observer.wait_event(running.job_id, "JobCancelRequested")
    stack.client.outcome(outcome(running, "succeeded", at=now()))
    stack.observer.wait_event(running.job_id, "JobCancelled")
    assert "JobSucceeded" not in stack.observer.names(running.job_id)
    # Finished: a no-op. The next event (a callback report) directly follows the success.
    stack.client.outcome(outcome(finished, "callback", callback_attempt=1, callback_ok=True,
                                 callback_url="http://127.0.0.1:9/cb", at=now()))
    callback = stack.observer.wait_event(finished.job_id, "JobCallbackAttempted")
    assert stack.observer.names(finished.job_id)[-2:] == ["JobSucceeded", "JobCallbackAttempted"]
    assert callback.envelope.sequence == 5


def test_deadline_fails_a_queued_job_promptly(stack: Stack) -> None:
    s = fresh(deadline=now() + timedelta(seconds=1.5))
    stack.client.submit(s)
    stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    failed = stack.observer.wait_event(s.job_id, "JobFailed", timeout=10)
    assert failed.reason == "deadline_exceeded" and failed.terminal
    lateness = (failed.envelope.occurred_at - s.deadline).total_seconds()
    assert 0 <= lateness < 3.0


def test_duplicates_and_conflicts(stack: Stack) -> None:
    key = uuid.uuid4().hex
    a = spec("payload-a", key=key, created_at=now())
    b = spec("payload-b", key=key, created_at=now())
    assert a.job_id == b.job_id
    stack.client.submit(a)
    stack.client.submit(a)
    stack.client.submit(b)
    rejected = stack.observer.wait_event(a.job_id, "JobRejected", timeout=STARTUP_S)
    assert isinstance(rejected, JobRejected) and rejected.reason == "conflict"
    assert rejected.detail == b.payload_sha256
    assert stack.observer.names(a.job_id) == ["JobSubmitted", "JobQueued", "JobRejected"]


def test_poison_messages_go_to_the_dlq_and_the_partition_keeps_flowing(stack: Stack) -> None:
    s = fresh()
    garbage = b"\x00not avro at all"
    stack.client.send(stack.client.topology.commands, s.job_id.encode(), garbage)
    # A decodable record that fails validation: the key is not the job id.
    wrong_key = Codec().encode(SubmitJob(command_id="c", spec=s))
    stack.client.send(stack.client.topology.commands, b"someone-else", wrong_key)
    stack.client.submit(s)
    stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    letters = poll_until(lambda: [d for d in stack.observer.dead if d.raw in (garbage, wrong_key)] or None
                       if len([d for d in stack.observer.dead if d.raw in (garbage, wrong_key)]) == 2
                       else None, what="two dead letters")
    reasons = sorted(d.reason.split(":")[0] for d in letters)
    assert reasons == ["invalid", "undecodable"]
    assert {d.raw for d in letters} == {garbage, wrong_key}


def test_unknown_model_hint_routes_to_default_and_fallback_on_open_circuit(stack: Stack) -> None:
    s = fresh(priority="interactive", long_context=True)
    stack.client.submit(s)
    first = stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    assert first.pool == "big"
    stack.client.outcome(outcome(s, "started", at=now()))
    stack.observer.wait_event(s.job_id, "JobStarted")
    stack.client.outcome(outcome(s, "failed", error_class="circuit_open", error="open", at=now()))
    fallback = stack.observer.wait_event(s.job_id, "JobQueued", count=2)
    assert (fallback.pool, fallback.reason, fallback.attempt) == ("small", "fallback", 2)
    hinted = fresh(model_hint="no-such-model")
    stack.client.submit(hinted)
    assert stack.observer.wait_event(hinted.job_id, "JobQueued").pool == "small"


def _changelog_values(stack: Stack, key: bytes) -> list[bytes]:
    """Every value the processors' state table has written for ``key`` so far."""
    changelog = topology.Topology(stack.settings).processor_changelog
    consumer = make_consumer(stack.settings, f"changelog-reader-{uuid.uuid4().hex[:8]}",
                             **{"enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(changelog, timeout=10).topics[changelog].partitions
        consumer.assign([TopicPartition(changelog, p, OFFSET_BEGINNING) for p in partitions])
        pending, values = set(partitions), []
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                pending.discard(message.partition())
            elif message.key() == key and message.value() is not None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def test_the_state_table_keeps_a_result_digest_not_its_text(stack: Stack) -> None:
    # The result's text travels in the outcome and in JobSucceeded; a third copy in the
    # table's changelog would only cost broker writes (an embedding is ~8 KB of JSON).
    s = fresh()
    stack.client.submit(s)
    stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    text = '{"embedding":[0.123456789]}'
    digest = hashlib.sha256(text.encode()).hexdigest()
    stack.client.outcome(outcome(s, "started", lease_ms=30_000, at=now()))
    stack.client.outcome(outcome(s, "succeeded", result_inline=text, result_sha256=digest,
                                 result_size=len(text), latency_ms=4.0, at=now()))
    done = stack.observer.wait_event(s.job_id, "JobSucceeded")
    assert isinstance(done, JobSucceeded) and done.result_inline == text  # the log keeps it
    stored = poll_until(lambda: [v for v in _changelog_values(stack, s.job_id.encode()) if b"succeeded" in v],
                        timeout_s=60, what="the succeeded state in the changelog")
    assert all(b"0.123456789" not in value for value in stored)
    assert any(digest.encode() in value for value in stored)

"""An unclean chaos run keeps every message about its suspect jobs, from every topic of the stack."""

from __future__ import annotations

import json

from confluent_kafka.admin import NewTopic

from brigade.kafka.clients import make_admin, make_producer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from cli.chaos.trace import trace_jobs
from schemas.codec import Codec
from testkit.jobs import outcome, spec, submit


def test_a_job_is_traced_through_commands_outcomes_and_stored_states_and_nothing_else_is(
    settings: Settings, topics: Topology
) -> None:
    # Given a job's command and outcome, its stored state (JSON on a topic of the stack's own),
    # and another job's command
    mine, other = spec("traced", key="k-1"), spec("not traced", key="k-2")
    states = f"{settings.kafka.topic_prefix}-processor-jobs-changelog"
    admin = make_admin(settings)
    for future in admin.create_topics([NewTopic(states, 1, 1)]).values():
        future.result()
    codec, producer = Codec(), make_producer(settings)
    producer.produce(topics.commands, codec.encode(submit(other)), key=other.job_id.encode())
    producer.produce(topics.commands, codec.encode(submit(mine)), key=mine.job_id.encode())
    producer.produce(topics.outcomes, codec.encode(outcome(mine, "started")), key=mine.job_id.encode())
    producer.produce(states, json.dumps({"job_id": mine.job_id, "status": "running"}).encode())
    assert producer.flush(30) == 0
    # When the stack is traced for it (and for a job the log never heard of)
    traces = trace_jobs(settings, [mine.job_id, "no-such-job"])
    # Then every message about the job is there, with where it is, and only those
    lines = traces[mine.job_id]
    by_topic = {line.split(" ", 2)[1].rsplit("[", 1)[0]: line for line in lines}
    assert len(lines) == 3 and set(by_topic) == {topics.commands, topics.outcomes, states}, lines
    assert "SubmitJob(" in by_topic[topics.commands] and "WorkOutcome(" in by_topic[topics.outcomes]
    assert '"status": "running"' in by_topic[states]
    assert all(other.job_id not in line for line in lines)
    assert traces["no-such-job"] == []

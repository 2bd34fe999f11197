"""The workers' committed offsets as the processors read them to hold a dispatch deadline."""

from __future__ import annotations

import asyncio

from brigade.errors import KafkaError
from brigade.kafka.lag import Offsets
from processors.progress import WorkerCommits

TOPIC = "work.p.batch"


def commits_from(answers: list[list[Offsets] | Exception]) -> WorkerCommits:
    def read() -> list[Offsets]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return WorkerCommits(read, ttl_s=1.0)


def test_an_item_is_passed_only_once_every_group_reading_its_topic_committed_past_it() -> None:
    fast = {(TOPIC, 0): 11, (TOPIC, 1): 3}
    slow = {(TOPIC, 0): 5}  # reads the topic, has not committed partition 1 at all
    other = {("work.q.batch", 0): 100}  # another pool's group: not a reader of TOPIC
    commits = commits_from([[fast, slow, other]])
    assert commits.passed(TOPIC, 0, 4) is None  # nothing read yet
    asyncio.run(commits.refresh(0.0))
    assert commits.passed(TOPIC, 0, 4) is True
    assert commits.passed(TOPIC, 0, 5) is False  # the slow group's next item
    assert commits.passed(TOPIC, 1, 0) is False
    assert commits.passed("work.p.interactive", 0, 0) is False  # no group committed there yet


def test_a_failed_read_keeps_the_last_reading_and_reads_again_after_the_ttl() -> None:
    answers: list[list[Offsets] | Exception] = [
        [{(TOPIC, 0): 5}], KafkaError("timed out"), [{(TOPIC, 0): 9}]]
    commits = commits_from(answers)
    asyncio.run(commits.refresh(0.0))
    asyncio.run(commits.refresh(0.5))  # within the ttl: not read
    assert len(answers) == 2
    asyncio.run(commits.refresh(2.0))  # fails
    assert commits.passed(TOPIC, 0, 6) is False  # the older, lower reading still holds it
    asyncio.run(commits.refresh(4.0))
    assert commits.passed(TOPIC, 0, 6) is True

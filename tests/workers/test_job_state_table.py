"""Where the workers' job-state rows go."""

from __future__ import annotations

from typing import Any

import pytest

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from workers.app import TABLE_NAME, create_app


def test_a_row_goes_to_its_job_partition_whatever_the_consumer_metadata_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker whose consumer metadata disagrees about the changelog's partitions (what
    # a fresh worker's group snapshot said for minutes on a loaded machine)
    settings = Settings()
    app = create_app(settings, [settings.default_pool or next(iter(settings.pools))])
    table: Any = app.tables[TABLE_NAME]
    changelog = table.changelog_topic_name
    counts = {Topology(settings).job_events: settings.topics.partitions, changelog: 0}
    monkeypatch.setattr(type(app.consumer), "topic_partitions", lambda self, topic: counts.get(topic))
    # Then a row is not placed by that metadata: the producer partitions it by its key (the
    # job id, as every record of the job), so no write can raise PartitionsMismatch
    assert table.partition_for_key(b"job-1") is None

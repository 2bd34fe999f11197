"""The topology's group and changelog names are the ones the Faust apps really use."""

from __future__ import annotations

from pathlib import Path

from brigade.kafka.topology import Topology
from processors.app import create_app
from testkit.jobs import pure_settings
from workers.app import app_id


def test_processor_group_and_changelog_match_the_faust_app(tmp_path: Path) -> None:
    settings = pure_settings(data_dir=tmp_path)
    app = create_app(settings, store="memory://", delay_tiers=False)
    topology = Topology(settings)
    assert app.conf.id == topology.processor_group
    [table] = app.tables.values()
    assert table.changelog_topic.get_topic_name() == topology.processor_changelog
    assert app_id(settings, ["b", "a"]) == topology.worker_group(["a", "b"]) != topology.processor_group

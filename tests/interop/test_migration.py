"""``brigade replay`` over a log written partly before the fingerprint fix (big-endian) and partly
after it (little-endian, as the specification says): every event is folded, none is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brigade.kafka.clients import make_producer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.simulate import key_of, stream
from schemas.codec import Codec

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _brigade(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BRIGADE_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "BRIGADE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "BRIGADE_CLICKHOUSE_URL": settings.clickhouse_url,
        "BRIGADE_DATA_DIR": str(settings.data_dir),
        "BRIGADE_CONFIG": str(settings.data_dir / "absent.toml"),
        "COLUMNS": "200",
    }
    return subprocess.run([sys.executable, "-c", "from cli.main import main; main()", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)


def test_replay_folds_a_log_holding_both_byte_orders(settings: Settings, topics: Topology) -> None:
    # Given a log of 10 jobs where every other event has the legacy big-endian fingerprint
    codec, producer = Codec(), make_producer(settings)
    events = list(stream(10, seed=5))
    for index, event in enumerate(events):
        value = codec.encode(event)
        if index % 2:
            value = value[:2] + value[2:10][::-1] + value[10:]
        producer.produce(topics.job_events, key=key_of(event), value=value)
    assert producer.flush(30) == 0
    # When the projections are rebuilt from the log, then verified against it
    rebuilt = _brigade(settings, "replay", "--into", "brigade")
    verified = _brigade(settings, "replay", "--no-processor")
    # Then every event of both orders was folded, and none was undecodable
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert f"rebuilt brigade: {len(events)} events" in rebuilt.stdout
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"({len(events)} events, 0 duplicates, 0 illegal, 0 undecodable)" in verified.stdout
    assert "no differences" in verified.stdout
    count = _brigade(settings, "query", "--sql", "SELECT count() AS n FROM jobs FINAL", "--format", "csv")
    assert count.stdout.split() == ["n", "10"], count.stdout + count.stderr

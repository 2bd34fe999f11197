"""A projector in its own process with its own chDB, for the SIGKILL test.

``python -m tests.projections.projector_child die-after-insert N SETTINGS_JSON CHDB_PATH``
projects and SIGKILLs itself right after inserting its N-th batch, before the commit.
``... catch-up 0 SETTINGS_JSON CHDB_PATH`` projects to the log's end, prints what the
tables hold as JSON and exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.backends import connect
from projections.logread import log_end_offsets
from projections.projector import Projector
from projections.types import ClickHouse
from projections.writer import WriteStats

# The killed member stays in the group until its session times out; keep that short.
FAST_REBALANCE = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def main(mode: str, count: int, settings_json: str, path: str) -> None:
    settings = Settings(**json.loads(settings_json))
    ch = connect(f"chdb://{path}", database="brigade")
    if mode == "die-after-insert":
        batches = 0

        def die(stats: WriteStats) -> None:
            nonlocal batches
            batches += 1
            if batches == count:
                os.kill(os.getpid(), signal.SIGKILL)

        Projector(settings=settings, clickhouse=ch, batch_size=100, batch_ms=1000, after_insert=die,
                  consumer_config=FAST_REBALANCE).run_forever()
        return
    projector = Projector(settings=settings, clickhouse=ch, batch_size=100, consumer_config=FAST_REBALANCE)
    projector.start()
    ends = log_end_offsets(settings, Topology(settings).job_events)
    caught_up = projector.wait_for_offsets(ends, timeout_s=120)
    projector.stop()
    print(json.dumps({"caught_up": caught_up, **summary(ch), "duplicates": projector.stats.duplicates,
                      "refolded": projector.stats.refolded_jobs}))
    threading.Thread(target=ch.close, daemon=True).start()


def summary(ch: ClickHouse) -> dict[str, object]:
    rows, distinct = ch.query("SELECT count(), uniqExact(event_id) FROM job_events")[0]
    events, submitted, succeeded = ch.query(
        "SELECT sum(events), sum(submitted), sum(succeeded) FROM job_metrics_1m")[0]
    statuses = dict(ch.query("SELECT job_id, status FROM jobs FINAL"))
    return {"rows": rows, "distinct": distinct, "rollup_events": events, "rollup_submitted": submitted,
            "rollup_succeeded": succeeded, "statuses": statuses}


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])

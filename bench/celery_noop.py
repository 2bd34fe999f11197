"""The peer baseline's task: a no-op Celery task on a Redis broker and result backend.

``acks_late`` is what a careful user picks for inference work (a crashed worker's task is
redelivered rather than lost), so the comparison with Brigade's at-least-once is fair.
The broker URL comes from the benchmark that starts Redis on loopback.
"""

from __future__ import annotations

import os

from celery import Celery

_URL = os.environ.get("BRIGADE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("brigade_bench", broker=_URL, backend=_URL)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    result_expires=600,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop(payload: str) -> dict[str, int]:
    """Return at once: measures orchestration, not inference."""
    return {"length": len(payload)}

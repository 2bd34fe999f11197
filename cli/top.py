"""``brigade top``: a live terminal view of the leading signals.

Two sources, both read-only: consumer lag straight from Kafka for every Brigade consumer
group, and the Prometheus metrics every process serves, shown as current values and
per-second rates between refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.live import Live
from rich.table import Table

from brigade.endpoints import operator_token_path
from brigade.kafka.lag import committed_offsets, end_offsets
from brigade.settings import Settings

Sample = dict[tuple[str, str], float]  # (endpoint, "name{labels}") → value


@dataclass(frozen=True)
class GroupLag:
    """One consumer group's lag on one topic."""

    group: str
    topic: str
    lag: int


def brigade_groups(admin: AdminClient, prefix: str) -> list[str]:
    """Consumer groups whose id starts with the topic prefix (every Brigade role's groups)."""
    listing = admin.list_consumer_groups(request_timeout=5).result()
    return sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix))


def lags(admin: AdminClient, bootstrap: str, groups: Iterable[str]) -> list[GroupLag]:
    """Lag per group and topic, over the partitions each group has committed."""
    rows = []
    for group in groups:
        committed = committed_offsets(admin, group)
        topics = sorted({topic for topic, _ in committed})
        ends = end_offsets(bootstrap, topics)
        for topic in topics:
            lag = sum(max(0, high - committed.get((t, p), 0)) for (t, p), high in ends.items() if t == topic)
            rows.append(GroupLag(group, topic, lag))
    return rows


def scrape(endpoints: Iterable[str], *, token: str | None = None) -> Sample:
    """Every ``brigade_*`` sample of every endpoint that answers; silent for those that don't.

    ``token`` (the operator token) is sent as a bearer token: the API's /metrics needs it.
    """
    values: Sample = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for url in endpoints:
        try:
            text = httpx.get(url, timeout=2, headers=headers).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith("brigade_") or sample.name.endswith("_created"):
                    continue
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[(url, f"{sample.name}{{{labels}}}")] = sample.value
    return values


def metrics_table(now: Sample, before: Sample, elapsed_s: float) -> Table:
    """Current value and rate per second of every sample."""
    table = Table(title="metrics", expand=True)
    for column in ("process", "metric", "value", "per s"):
        table.add_column(column, justify="right" if column in ("value", "per s") else "left")
    for (url, name), value in sorted(now.items()):
        rate = (value - before[(url, name)]) / elapsed_s if (url, name) in before and elapsed_s > 0 else 0.0
        process = url.split("//", 1)[-1].split("/", 1)[0]
        table.add_row(process, name, f"{value:,.2f}", f"{rate:,.2f}")
    return table


def lag_table(rows: list[GroupLag]) -> Table:
    """Consumer lag per group and topic."""
    table = Table(title="consumer lag", expand=True)
    table.add_column("group")
    table.add_column("topic")
    table.add_column("lag", justify="right")
    for row in rows:
        table.add_row(row.group, row.topic, f"{row.lag:,}")
    return table


def run(settings: Settings, admin: AdminClient, endpoints: list[str], *, interval_s: float,
        iterations: int | None) -> None:
    """Refresh the view every ``interval_s`` until Ctrl-C (or ``iterations`` refreshes)."""
    before: Sample = {}
    last = time.monotonic()
    count = 0
    with Live(refresh_per_second=2, screen=False) as live:
        while iterations is None or count < iterations:
            groups = brigade_groups(admin, settings.kafka.topic_prefix)
            now = scrape(endpoints, token=_operator_token(settings))
            elapsed = time.monotonic() - last
            live.update(Group(lag_table(lags(admin, settings.kafka.bootstrap, groups)),
                              metrics_table(now, before, elapsed)))
            before, last, count = now, time.monotonic(), count + 1
            if iterations is None or count < iterations:
                time.sleep(interval_s)


def _operator_token(settings: Settings) -> str | None:
    path = operator_token_path(settings)
    return path.read_text().strip() if path.exists() else None

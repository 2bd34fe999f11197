"""The fault schedule of a chaos run: what to break, and when, as a pure function of the run.

Times are seconds from the start of the workload. Worker kills repeat through the
submission window and a tail after it (so redelivery is exercised while the backlog
drains); the one-off faults land inside the window, where they hit jobs in flight.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "kill-worker", "kill-processor", "kill-api", "stop-broker", "start-broker", "kill-leader", "start-node",
]


@dataclass(frozen=True, order=True, slots=True)
class PlannedFault:
    """One fault: at ``at_s`` seconds into the run, do ``kind`` to ``target``."""

    at_s: float
    kind: FaultKind
    target: str


@dataclass(frozen=True, kw_only=True)
class ScheduleOptions:
    """What a schedule is drawn from."""

    window_s: float
    workers: int = 2
    processors: int = 2
    brokers: int = 1
    worker_every_s: float = 10.0
    tail_s: float = 20.0
    broker_down_s: float = 8.0
    seed: int = 0


def plan(options: ScheduleOptions) -> list[PlannedFault]:
    """Every fault of the run, in time order."""
    if options.window_s <= 0 or options.workers < 1 or options.processors < 1 or options.worker_every_s <= 0:
        raise ValueError("a fault schedule needs a positive window, workers, processors and interval")
    rng = random.Random(options.seed)
    faults = _worker_kills(options, rng)
    w = options.window_s
    processor = f"processor-{rng.randrange(options.processors) + 1}"
    faults.append(PlannedFault(0.3 * w, "kill-processor", processor))
    faults.append(PlannedFault(0.5 * w, "kill-api", "api"))
    faults += _broker_faults(options, at_s=0.7 * w)
    return sorted(faults)


def _worker_kills(options: ScheduleOptions, rng: random.Random) -> list[PlannedFault]:
    end = options.window_s + options.tail_s
    every = options.worker_every_s
    count = int(end // every)
    return [
        PlannedFault(every * (n + 1), "kill-worker", f"worker-{rng.randrange(options.workers) + 1}")
        for n in range(count)
    ]


def _broker_faults(options: ScheduleOptions, *, at_s: float) -> list[PlannedFault]:
    back = at_s + options.broker_down_s
    if options.brokers > 1:
        # The leader is only known when the fault fires: the runner picks it then.
        return [PlannedFault(at_s, "kill-leader", "leader"), PlannedFault(back, "start-node", "leader")]
    return [PlannedFault(at_s, "stop-broker", "kafka"), PlannedFault(back, "start-broker", "kafka")]


def kinds(names: Iterable[str]) -> set[str]:
    """The distinct kinds among fault kind ``names`` (bringing a broker back is not a fault)."""
    return {name for name in names if name not in ("start-broker", "start-node")}

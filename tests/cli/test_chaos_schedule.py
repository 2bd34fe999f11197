"""The chaos fault schedule: every kind once, worker kills on the interval, restarts after stops."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.chaos.schedule import ScheduleOptions, kinds, plan

options = st.builds(
    ScheduleOptions,
    window_s=st.floats(5, 3600), workers=st.integers(1, 8), processors=st.integers(1, 4),
    brokers=st.sampled_from([1, 3]), worker_every_s=st.floats(1, 60), tail_s=st.floats(0, 60),
    broker_down_s=st.floats(1, 30), seed=st.integers(0, 2**32),
)


@given(options)
def test_schedule_is_ordered_and_names_real_targets(o: ScheduleOptions) -> None:
    faults = plan(o)
    assert faults == sorted(faults)
    workers = {f"worker-{n}" for n in range(1, o.workers + 1)}
    processors = {f"processor-{n}" for n in range(1, o.processors + 1)}
    for fault in faults:
        if fault.kind == "kill-worker":
            assert fault.target in workers
        if fault.kind == "kill-processor":
            assert fault.target in processors


@given(options)
def test_each_one_off_fault_happens_once_inside_the_window(o: ScheduleOptions) -> None:
    faults = plan(o)
    once = [f for f in faults if f.kind != "kill-worker"]
    assert sorted(f.kind for f in once) == sorted(
        ["kill-processor", "kill-api", *(["kill-leader", "start-node"] if o.brokers > 1
                                         else ["stop-broker", "start-broker"])])
    assert all(0 < f.at_s <= o.window_s for f in once if not f.kind.startswith("start"))


@given(options)
def test_the_broker_comes_back_after_it_went_down(o: ScheduleOptions) -> None:
    faults = plan(o)
    down = next(f for f in faults if f.kind in ("stop-broker", "kill-leader"))
    up = next(f for f in faults if f.kind in ("start-broker", "start-node"))
    assert up.at_s == pytest.approx(down.at_s + o.broker_down_s)


@given(options)
def test_workers_die_on_the_interval_through_the_tail(o: ScheduleOptions) -> None:
    times = [f.at_s for f in plan(o) if f.kind == "kill-worker"]
    assert len(times) == int((o.window_s + o.tail_s) // o.worker_every_s)
    assert all(b - a == pytest.approx(o.worker_every_s) for a, b in itertools.pairwise(times))


def test_a_run_long_enough_injects_at_least_four_kinds() -> None:
    assert len(kinds(f.kind for f in plan(ScheduleOptions(window_s=60)))) >= 4
    assert "kill-leader" in kinds(f.kind for f in plan(ScheduleOptions(window_s=60, brokers=3)))


def test_same_seed_same_schedule() -> None:
    assert plan(ScheduleOptions(window_s=100, seed=7)) == plan(ScheduleOptions(window_s=100, seed=7))


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="positive window"):
        plan(ScheduleOptions(window_s=0))

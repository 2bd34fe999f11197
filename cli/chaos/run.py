"""``brigade chaos``: one run from an empty directory to a ledger, a table and a JSON report.

The run starts its stack, starts reading the event log, submits the workload while the
fault schedule runs, waits until every accepted job has a decision in the log (or the
deadline passes), lets callbacks and the projector finish, runs ``brigade replay`` as an
operator would, and folds everything into the report. The API's own answers are only used
to learn which jobs it accepted.
"""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from brigade.errors import BrigadeError
from cli.chaos import ledger as lg
from cli.chaos.faults import Injector
from cli.chaos.observe import LogTail, emulator_stats, end_offsets, result_in_store
from cli.chaos.receiver import Receiver
from cli.chaos.schedule import ScheduleOptions, kinds, plan
from cli.chaos.stack import TENANTS, ChaosStack, StackOptions, chaos_stack
from cli.chaos.trace import trace_jobs
from cli.chaos.workload import Submitted, Submitter, plan_jobs
from workers.callbacks import tenant_secret

TRACED = 10  # lost jobs, and jobs decided twice, whose messages the report keeps
SLOWEST, SLOWEST_TRACED = 10, 3  # the slowest decided jobs listed, and traced


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """One chaos run."""

    jobs: int = 3000
    rate: float = 40.0
    brokers: int = 1
    workers: int = 2
    # Seconds after the last submission: room for a work item lost before it started to
    # reach the processors' dispatch deadline (60 s in a chaos stack, held while the item is
    # queued behind a backlog) and run again.
    deadline_s: float = 420.0
    worker_every_s: float = 10.0
    seed: int = 0
    keep: Path | None = None


def run(options: RunOptions, *, console: Console) -> dict[str, Any]:
    """Carry out one chaos run and return its report (see ``docs/chaos.md``)."""
    started = time.monotonic()
    if options.keep is not None:
        options.keep.mkdir(parents=True, exist_ok=True)
        return _run_in(options.keep, options, console, started)
    with tempfile.TemporaryDirectory(prefix="brigade-chaos-") as folder:
        return _run_in(Path(folder), options, console, started)


def _run_in(home: Path, options: RunOptions, console: Console, started: float) -> dict[str, Any]:
    stack_options = StackOptions(brokers=options.brokers, workers=options.workers, seed=options.seed)
    with chaos_stack(home, stack_options, console=console) as stack:
        receiver = Receiver(lambda tenant: tenant_secret(stack.settings.callbacks, tenant))
        receiver.start()
        watcher = threading.Thread(target=stack.supervisor.run_until_stopped, name="chaos-supervisor",
                                   daemon=True)
        watcher.start()
        tail = LogTail(stack.settings)
        tail.start()
        try:
            return _drive(stack, receiver, tail, options, console, started)
        finally:
            stack.supervisor.request_stop()
            watcher.join(timeout=10)
            tail.close()
            receiver.close()


def _drive(stack: ChaosStack, receiver: Receiver, tail: LogTail, options: RunOptions, console: Console,
           started: float) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    jobs = plan_jobs(options.jobs, tenants=list(TENANTS), run_id=run_id, callback_url=receiver.url,
                     seed=options.seed)
    window = options.jobs / options.rate
    schedule = plan(ScheduleOptions(window_s=window, workers=options.workers, brokers=options.brokers,
                                    worker_every_s=options.worker_every_s, seed=options.seed))
    console.print(f"run {run_id}: {options.jobs} jobs over {window:.0f}s, {len(schedule)} faults planned")
    began = time.monotonic()
    injector = Injector(stack, schedule, started=began, console=console)
    injector.start()
    stop = threading.Event()
    submitter = Submitter(stack.api_url, stack.keys, rate=options.rate)
    try:
        submitted = submitter.run(jobs, stop=stop, progress=_every(console, 500, "submitted"))
        injector.join()
        # From the end of submissions and faults: on a loaded machine the API may accept the workload
        # well after its planned window.
        deadline = time.monotonic() + options.deadline_s
        try:
            _await_decisions(tail, submitted, console, deadline)
            if not _await_callbacks(tail, receiver, submitted, deadline) or _undecided(tail, submitted):
                _dump_tasks(stack, console)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: judging what the log holds now[/yellow]")
        replay_ok, replay_tail = _replay_until_equal(stack, deadline)
        report = _report(stack, receiver, tail, submitted, injector, options,
                         replay_ok=replay_ok, replay_tail=replay_tail, started=started)
    finally:
        stop.set()
        injector.stop()
    return report


def _every(console: Console, step: int, what: str) -> Callable[[int], None]:
    def progress(n: int) -> None:
        if n % step == 0:
            console.print(f"{n} {what}")

    return progress


def _await_decisions(tail: LogTail, submitted: Submitted, console: Console, deadline: float) -> None:
    accepted = list(submitted.accepted)
    last = -1
    while time.monotonic() < deadline:
        with tail.lock:
            left = len(tail.ledger.undecided(accepted))
        if left == 0:
            break
        if left != last:
            console.print(f"{left} jobs without a decision yet")
            last = left
        time.sleep(2.0)
    # Whatever was in the log when the wait ended is read before anything is counted.
    ends = end_offsets(tail.settings)
    while not tail.caught_up(ends) and time.monotonic() < deadline + 60:
        time.sleep(0.2)


def _undecided(tail: LogTail, submitted: Submitted) -> list[str]:
    with tail.lock:
        return tail.ledger.undecided(list(submitted.accepted))


def _dump_tasks(stack: ChaosStack, console: Console) -> None:
    # Something is stuck: every processor and worker logs its asyncio tasks' stacks (SIGUSR1),
    # so the kept logs show where.
    for name in stack.supervisor.names():
        if name.startswith(("worker", "processor")) and stack.supervisor.signal(name, signal.SIGUSR1):
            console.print(f"[yellow]asked {name} for a task dump (see the supervisor log)[/yellow]")
    time.sleep(2.0)  # the dumps are written by the children's loops; give them a moment


def _await_callbacks(tail: LogTail, receiver: Receiver, submitted: Submitted, deadline: float) -> bool:
    # Callbacks follow decisions by a few seconds (and by retries after a 503): poll until
    # every decided job with a callback has one, bounded by the run's deadline.
    wanted = [j for j, p in submitted.accepted.items() if p.has_callback]
    limit = max(deadline, time.monotonic() + 60)
    while time.monotonic() < limit:
        with tail.lock:
            missing = lg.callbacks_missing(tail.ledger, wanted, receiver.delivered())
        if missing == 0:
            return True
        time.sleep(1.0)
    return False


def _replay_until_equal(stack: ChaosStack, deadline: float) -> tuple[bool, str]:
    # The embedded projector trails the log by a moment (more after the API was killed):
    # verify until equal, a bounded number of times.
    output = ""
    for _ in range(10):
        result = stack.brigade("replay")
        output = (result.stdout + result.stderr).strip()
        if result.returncode == 0:
            return True, output[-400:]
        if time.monotonic() > deadline:
            break
        time.sleep(5.0)
    return False, output[-2000:]


def _report(stack: ChaosStack, receiver: Receiver, tail: LogTail, submitted: Submitted, injector: Injector,
            options: RunOptions, *, replay_ok: bool, replay_tail: str, started: float) -> dict[str, Any]:
    stats = emulator_stats(stack.emulator_url)
    with tail.lock:
        counts = lg.count(tail.ledger, submitted.accepted, result_ok=result_in_store)
        with_callback = [j for j, p in submitted.accepted.items() if p.has_callback]
        missing = lg.callbacks_missing(tail.ledger, with_callback, receiver.delivered())
        delivered = receiver.delivered()
        missing_jobs = sorted(j for j in with_callback if tail.ledger.is_terminal(j) and j not in delivered)
        undecided = sorted(tail.ledger.undecided(list(submitted.accepted)))
        twice = lg.decided_twice_jobs(tail.ledger, submitted.accepted)
        slowest = tail.ledger.slowest(submitted.accepted, SLOWEST)
    callbacks = receiver.counts()
    report: dict[str, Any] = {
        **asdict(counts),
        "duplicate_model_calls_pct": lg.duplicate_model_calls_pct(stats.get("served", {})),
        "callbacks_expected": len(with_callback),
        "callbacks_missing": missing,
        "callbacks_missing_jobs": missing_jobs[:50],
        "lost_jobs": undecided[:50],
        "decided_twice_jobs": twice[:50],
        # Every message about the first few of them, from every topic, while the broker is up.
        "traces": _traces(stack, [*undecided[:TRACED], *twice[:TRACED],
                                  *(job for job, _ in slowest[:SLOWEST_TRACED])]),
        # Seconds from the tail's first read of a job's events to its decision.
        "slowest_jobs": {job: round(seconds, 1) for job, seconds in slowest},
        "callbacks_unverified": callbacks["unverified"],
        "callbacks_redelivered": callbacks["redelivered"],
        "callbacks_refused_503": callbacks["refused_503"],
        "callbacks_aborted": callbacks["aborted"],
        "replay_equals_live": replay_ok,
        "replay": replay_tail,
        "faults": [f.to_json() for f in injector.done],
        "fault_kinds": sorted(kinds(f.kind for f in injector.done)),
        "not_accepted": submitted.not_accepted,
        "submit_retries": submitted.retries,
        "cancel_requests": submitted.cancel_requests,
        "cancelled_while_running": submitted.cancelled_running,
        "model_requests": stats.get("requests", 0),
        "model_statuses": stats.get("status", {}),
        "undecodable_events": tail.undecodable,
        "jobs": options.jobs,
        "brokers": options.brokers,
        "workers": options.workers,
        "wall_s": round(time.monotonic() - started, 1),
    }
    report["clean"] = lg.clean(report)
    return report


def _traces(stack: ChaosStack, job_ids: list[str]) -> dict[str, list[str]]:
    try:
        return trace_jobs(stack.settings, job_ids)
    except (KafkaException, BrigadeError) as exc:  # the evidence is a bonus: never lose the report
        return {job_id: [f"not traced: {exc}"] for job_id in job_ids}


def print_report(report: dict[str, Any], console: Console) -> None:
    """The report as a table: the counts that must be zero first."""
    table = Table(title="chaos ledger" + (" (clean)" if report["clean"] else " (NOT clean)"))
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name in ("submitted", "terminal", "lost", "decided_twice", "duplicate_results", "results_missing",
                 "callbacks_expected", "callbacks_missing", "callbacks_unverified", "replay_equals_live",
                 "duplicate_model_calls_pct", "redelivered_events", "callbacks_redelivered",
                 "not_accepted", "statuses", "fault_kinds", "wall_s"):
        table.add_row(name, str(report.get(name)))
    console.print(table)
    faults = Table(title=f"{len(report['faults'])} faults injected")
    for column in ("at_s", "kind", "target", "detail"):
        faults.add_column(column)
    for fault in report["faults"]:
        faults.add_row(str(fault["at_s"]), fault["kind"], fault["target"], fault["detail"])
    console.print(faults)


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the report as JSON."""
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

"""The chaos workload: which jobs to submit, and submitting them through the API under faults.

``plan_jobs`` is pure (the mix of tenants, priorities, callbacks and cancellations, drawn
from a seed). ``Submitter`` paces submissions, retries each one with the same idempotency
key until the API accepts it (the API may be dead, or the broker down), and afterwards
cancels the jobs planned for it, some while queued and some once they run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ingress.client import ApiRequestError, Client

Cancel = Literal["", "queued", "running"]
#: Answers worth retrying a submission after: the API is shedding load or its broker is away.
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class PlannedJob:
    """One job of the workload."""

    index: int
    tenant: str
    body: dict[str, Any]
    idempotency_key: str
    cancel: Cancel = ""

    @property
    def has_callback(self) -> bool:
        """Whether the job asks for a callback."""
        return "callbackUrl" in self.body


@dataclass(frozen=True, kw_only=True)
class Mix:
    """Fractions of the workload (the rest: batch priority, no callback, not cancelled)."""

    interactive: float = 0.3
    callback: float = 0.25
    cancel_queued: float = 0.02
    cancel_running: float = 0.02
    max_attempts: int = 8


def plan_jobs(count: int, *, tenants: list[str], run_id: str, callback_url: str, seed: int = 0,
              mix: Mix | None = None) -> list[PlannedJob]:
    """``count`` jobs spread over ``tenants``; every input is unique to the run and the job."""
    mix = mix or Mix()
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        body: dict[str, Any] = {
            "input": f"chaos {run_id} job {index}",
            "priority": "interactive" if rng.random() < mix.interactive else "batch",
            "maxAttempts": mix.max_attempts,
        }
        if rng.random() < mix.callback:
            body["callbackUrl"] = f"{callback_url}/{index}"
        draw = rng.random()
        cancel: Cancel = ("queued" if draw < mix.cancel_queued
                          else "running" if draw < mix.cancel_queued + mix.cancel_running else "")
        jobs.append(PlannedJob(index=index, tenant=tenants[index % len(tenants)], body=body,
                               idempotency_key=f"{run_id}-{index}", cancel=cancel))
    return jobs


@dataclass
class Submitted:
    """What the API accepted, and what it would not take."""

    accepted: dict[str, PlannedJob] = field(default_factory=dict)
    not_accepted: int = 0
    cancel_requests: int = 0
    cancelled_running: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Submitter:
    """Submits planned jobs at ``rate`` per second from a few threads, one client per tenant."""

    def __init__(self, url: str, keys: dict[str, str], *, rate: float, threads: int = 6,
                 give_up_s: float = 300.0) -> None:
        self._url = url
        self._keys = keys
        self._rate = rate
        self._threads = threads
        self._give_up_s = give_up_s
        self._local = threading.local()
        self._clients: list[Client] = []
        self.submitted = Submitted()

    def run(self, jobs: list[PlannedJob], *, stop: threading.Event,
            progress: Callable[[int], None] | None = None) -> Submitted:
        """Submit every job (paced) and its planned cancellation; returns what was accepted."""
        started = time.monotonic()
        pool = ThreadPoolExecutor(self._threads, thread_name_prefix="chaos-submit")
        cancels = ThreadPoolExecutor(2, thread_name_prefix="chaos-cancel")
        try:
            for job in jobs:
                # Paced, but never more than a few seconds of submissions ahead of the API:
                # an overloaded API is not helped by a queue of retrying clients.
                due = started + job.index / self._rate
                while not stop.is_set() and self._backlog(job.index) > self._rate * 5:
                    stop.wait(0.1)
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                pool.submit(self._submit, job, stop, cancels)
                if progress is not None:
                    progress(job.index + 1)
            pool.shutdown(wait=True)
        except BaseException:
            # Ctrl-C: drop what is queued, let the running submissions see ``stop``.
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            cancels.shutdown(wait=True, cancel_futures=True)
            for client in self._clients:
                client.close()
        return self.submitted

    def _backlog(self, index: int) -> int:
        with self.submitted.lock:
            return index - len(self.submitted.accepted) - self.submitted.not_accepted

    def _client(self, tenant: str) -> Client:
        clients: dict[str, Client] = self._local.__dict__.setdefault("clients", {})
        if tenant not in clients:
            # A long timeout: a request the API is still working on is not sent again.
            clients[tenant] = Client(self._url, api_key=self._keys[tenant], timeout_s=120)
            with self.submitted.lock:
                self._clients.append(clients[tenant])
        return clients[tenant]

    def _submit(self, job: PlannedJob, stop: threading.Event, cancels: ThreadPoolExecutor) -> None:
        answer = self._with_retries(
            lambda: self._client(job.tenant).submit(job.body, idempotency_key=job.idempotency_key), stop)
        with self.submitted.lock:
            if answer is None:
                self.submitted.not_accepted += 1
                return
            self.submitted.accepted[answer["jobId"]] = job
        if job.cancel == "queued":
            self._cancel(job, answer["jobId"], stop)
        elif job.cancel == "running":
            cancels.submit(self._cancel_when_running, job, answer["jobId"], stop)

    def _cancel_when_running(self, job: PlannedJob, job_id: str, stop: threading.Event) -> None:
        # Bounded: a job that finishes before it is seen running is simply not cancelled.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not stop.is_set():
            status = self._with_retries(lambda: self._client(job.tenant).get(job_id), stop, give_up_s=10)
            state = status["status"] if status else ""
            if state == "running":
                if self._cancel(job, job_id, stop):
                    with self.submitted.lock:
                        self.submitted.cancelled_running += 1
                return
            if state in ("succeeded", "failed", "cancelled"):
                return
            stop.wait(0.05)

    def _cancel(self, job: PlannedJob, job_id: str, stop: threading.Event) -> bool:
        answer = self._with_retries(lambda: self._client(job.tenant).cancel(job_id, reason="chaos"), stop,
                                    give_up_s=30)
        if answer is not None:
            with self.submitted.lock:
                self.submitted.cancel_requests += 1
        return answer is not None

    def _with_retries(self, call: Callable[[], dict[str, Any]], stop: threading.Event,
                      give_up_s: float | None = None) -> dict[str, Any] | None:
        deadline = time.monotonic() + (give_up_s or self._give_up_s)
        pause = 0.2
        while not stop.is_set():
            try:
                return call()
            except ApiRequestError as exc:
                # 404: a job read before the projector has it; 409: a cancel of a finished job.
                if exc.status not in RETRYABLE and exc.status != 404:
                    return None
                wait = exc.retry_after or pause
            except httpx.HTTPError:
                wait = pause
            if time.monotonic() + wait > deadline:
                return None
            with self.submitted.lock:
                self.submitted.retries += 1
            stop.wait(wait)
            pause = min(2.0, pause * 2)
        return None

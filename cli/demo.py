"""``brigade demo``: a mixed workload against the running stack, checked end to end.

Submits through the HTTP API and the producer SDK (interactive and batch, idempotency keys
with a repeat, a cancellation, a bad input, a signed callback to a local receiver), waits
until every job is terminal, and prints a summary. Exit code 0 only when every job ended
as expected.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from brigade.settings import Settings
from brigade.status import TERMINAL
from ingress.client import ApiRequestError, Client
from ingress.producer import JobProducer

SENTENCES = [
    "A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today.",
    "Kafka keeps the log.", "ClickHouse answers analytics.", "Batching decides cost.",
]


@dataclass
class Expectation:
    """What one submitted job should end as (any of ``allowed``)."""

    job_id: str
    label: str
    allowed: set[str]
    final: str | None = None


@dataclass
class Receiver:
    """A loopback HTTP server collecting callback deliveries."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        """Serve on a free loopback port; return the callback URL."""
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                deliveries.append({"headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def run(settings: Settings, *, console: Console, jobs: int = 40, timeout_s: float = 180.0) -> bool:
    """Run the demo workload; True when every job ended as expected."""
    credentials = json.loads(Path(settings.path("dev-credentials.json")).read_text())
    receiver = Receiver()
    hook = receiver.start()
    run_id = f"demo-{int(time.time())}"
    try:
        with Client(credentials["url"], api_key=credentials["apiKey"]) as client:
            expectations, checks = _submit(settings, client, credentials["tenantId"], hook, run_id, jobs)
            _wait(client, expectations, console, timeout_s)
            checks["callback delivered and signed"] = _callback_ok(receiver)
            _summary(console, client, expectations, checks)
            sample = next((e.job_id for e in expectations if e.final == "succeeded"), None)
            if sample is not None:
                checks["brigade query and audit answer"] = _operator_views(
                    console, credentials["tenantId"], sample)
    finally:
        receiver.stop()
    return all(e.final in e.allowed for e in expectations) and all(checks.values())


def _submit(settings: Settings, client: Client, tenant: str, hook: str, run_id: str,
            jobs: int) -> tuple[list[Expectation], dict[str, bool]]:
    expected: list[Expectation] = []
    checks: dict[str, bool] = {}
    for i in range(jobs // 2):
        priority = "interactive" if i % 2 else "batch"
        body = {"input": f"{SENTENCES[i % len(SENTENCES)]} ({run_id} #{i})", "priority": priority}
        expected.append(Expectation(client.submit(body)["jobId"], f"http {priority}", {"succeeded"}))
    first = client.submit({"input": f"idempotent {run_id}"}, idempotency_key=f"{run_id}-key")
    repeat = client.submit({"input": f"idempotent {run_id}"}, idempotency_key=f"{run_id}-key")
    checks["repeat with same key → same job"] = first["jobId"] == repeat["jobId"]
    expected.append(Expectation(first["jobId"], "idempotent", {"succeeded"}))
    try:
        client.submit({"input": f"other payload {run_id}"}, idempotency_key=f"{run_id}-key")
        checks["same key, other payload → 409"] = False
    except ApiRequestError as exc:
        checks["same key, other payload → 409"] = exc.status == 409
    try:
        client.submit({"input": 42, "priority": "urgent"})
        checks["bad input → 4xx"] = False
    except ApiRequestError as exc:
        checks["bad input → 4xx"] = exc.status in (400, 422)
    callback = client.submit({"input": f"call me back {run_id}", "callbackUrl": hook})
    expected.append(Expectation(callback["jobId"], "callback", {"succeeded"}))
    expected.append(_cancelled(client, run_id))
    with JobProducer(settings=settings, tenant_id=tenant) as producer:
        futures = [producer.submit({"input": f"sdk {run_id} #{i}", "priority": "batch"})
                   for i in range(jobs - jobs // 2)]
        producer.flush()
        expected += [Expectation(f.result(30).job_id, "sdk batch", {"succeeded"}) for f in futures]
    return expected, checks


def _cancelled(client: Client, run_id: str) -> Expectation:
    # A cancel may arrive after the job already ran; the API then says so (409) and the job
    # has, correctly, succeeded. Either way the client got a clear answer.
    job = client.submit({"input": f"cancel me {run_id}", "priority": "batch"})
    try:
        client.cancel(job["jobId"], reason="demo")
        return Expectation(job["jobId"], "cancelled", {"cancelled"})
    except ApiRequestError as exc:
        if exc.status != 409:
            raise
        return Expectation(job["jobId"], "cancelled (too late)", {"succeeded"})


def _wait(client: Client, expected: list[Expectation], console: Console, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("jobs terminal", total=len(expected))
        while time.monotonic() < deadline:
            for item in expected:
                if item.final is None:
                    status = _status(client, item.job_id)
                    item.final = status if status in TERMINAL else None
            done = sum(1 for e in expected if e.final is not None)
            progress.update(task, completed=done)
            if done == len(expected):
                return
            time.sleep(0.25)


def _status(client: Client, job_id: str) -> str | None:
    # A job sent through the SDK is unknown to the API until the projection has it.
    try:
        status: str = client.get(job_id)["status"]
    except ApiRequestError as exc:
        if exc.status == 404:
            return None
        raise
    return status


def _callback_ok(receiver: Receiver, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not receiver.deliveries and time.monotonic() < deadline:
        time.sleep(0.1)
    return any(d["headers"].get("X-Brigade-Signature", "").startswith("sha256=") for d in receiver.deliveries)


def _summary(console: Console, client: Client, expected: list[Expectation], checks: dict[str, bool]) -> None:
    table = Table(title="demo jobs")
    for column in ("kind", "jobs", "as expected"):
        table.add_column(column)
    for label in sorted({e.label for e in expected}):
        group = [e for e in expected if e.label == label]
        good = sum(1 for e in group if e.final in e.allowed)
        table.add_row(label, str(len(group)), f"{good}/{len(group)}")
    console.print(table)
    for name, ok in checks.items():
        console.print(f"{'[green]✓' if ok else '[red]✗'}[/] {name}")
    sample = next(e for e in expected if e.final == "succeeded")
    vector = client.result(sample.job_id)["output"].get("embedding", [])
    console.print(f"sample result {sample.job_id}: embedding of {len(vector)} dimensions")


def _operator_views(console: Console, tenant: str, job_id: str) -> bool:
    """What an operator sees: `brigade query` for this tenant and `brigade audit` of one job."""
    ok = True
    for args in (["query", "success-rate", "--since", "15m", "--tenant", tenant],
                 ["query", "latency", "--since", "15m", "--tenant", tenant],
                 ["audit", job_id]):
        console.print(f"$ brigade {' '.join(args)}", style="bold")
        # The operator commands run as their own processes, exactly as a user types them.
        result = subprocess.run([sys.executable, "-m", "cli", *args], check=False,
                                capture_output=True, text=True, timeout=120)
        console.print(result.stdout.rstrip(), markup=False, highlight=False)
        if result.returncode != 0:
            console.print(result.stderr.rstrip(), markup=False, highlight=False)
            ok = False
    return ok

"""Start the embedded stack the way a user does (``brigade up``), for benchmarks.

The default pool serves the real all-MiniLM-L6-v2 through the built-in model server; an
``emulated`` pool points at the fault-injecting emulator (a benchmark tool) so the
orchestration cost can be measured apart from model time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from brigade.net import free_port
from cli.stack import stack_settings
from testkit.support import RunningStack, clean_env, http_ok, poll_until, stack_toml, stop_group

EMULATED = "emulated-minilm"


@contextmanager
def embedded_stack(*, model_server: bool, batch_latency_ms: float = 0.0,
                   item_latency_ms: float = 0.0) -> Iterator[RunningStack]:
    """A fresh ``brigade up`` (and an emulator) in a temporary directory, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="brigade-bench-") as folder:
        home = Path(folder)
        ports = {n: free_port() for n in ("kafka", "controller", "api", "model", "emulator")}
        (home / "brigade.toml").write_text(stack_toml(
            ports, emulated_model=EMULATED, model_server=model_server,
            api="lag_soft_limit = 10000000\nlag_hard_limit = 20000000",
            emulated="max_concurrency = 8\n"
                     "batch = { max_batch_size = 256, max_delay_ms = 20, token_budget = 1000000 }",
        ))
        env = clean_env()
        with (home / "emulator.log").open("wb") as log:
            emulator = subprocess.Popen(
                [sys.executable, "-m", "cli", "model-server", "--emulate",
                 "--port", str(ports["emulator"]),
                 "--batch-latency-ms", str(batch_latency_ms), "--item-latency-ms", str(item_latency_ms),
                 "--model", EMULATED, "--gpu-slots", "4"],
                cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with (home / "up.log").open("wb") as log:
            argv = [sys.executable, "-m", "cli", "up"] + ([] if model_server else ["--no-model-server"])
            up = subprocess.Popen(argv, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        url = f"http://127.0.0.1:{ports['api']}"
        try:
            emulator_url = f"http://127.0.0.1:{ports['emulator']}"
            poll_until(lambda: http_ok(f"{emulator_url}/healthz"), timeout_s=60, interval_s=0.25,
                       what=f"{emulator_url} ready")
            poll_until(lambda: http_ok(f"{url}/readyz"), timeout_s=420, interval_s=0.25, what=f"{url} ready")
            credentials = json.loads((home / ".brigade" / "dev-credentials.json").read_text())
            yield RunningStack(home, stack_settings(home), url, credentials["apiKey"],
                               credentials["tenantId"], emulator_url)
        finally:
            for process in (up, emulator):
                stop_group(process)


__all__ = ["EMULATED", "RunningStack", "embedded_stack"]

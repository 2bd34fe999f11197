"""``make bench``: every benchmark in turn, each in its own process, results in bench/results/."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench.bench_codec",
    "bench.bench_kafka",
    "bench.bench_processor",
    "bench.bench_projections",
    "bench.bench_ingress",
    "bench.bench_waits",
    "bench.bench_lookups",
    "bench.bench_model",
    "bench.bench_workers",
    "bench.bench_stack",
)


def main() -> int:
    """Run each benchmark; the exit code counts the ones that failed."""
    failed = 0
    for module in BENCHMARKS:
        print(f"\n=== {module} ===", flush=True)
        if subprocess.run([sys.executable, "-m", module], check=False).returncode != 0:
            print(f"{module} failed", flush=True)
            failed += 1
    return failed


if __name__ == "__main__":
    raise SystemExit(main())

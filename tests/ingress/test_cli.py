"""The API's process entry point (``asgi_app``, uvicorn's factory) tunes the cycle collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ingress.cli import GC_YOUNG_THRESHOLD

_PROBE = """
import gc, json
before = gc.get_threshold()
from ingress.cli import asgi_app
asgi_app()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_the_api_process_freezes_its_start_up_heap_and_collects_young_objects_less(tmp_path: Path) -> None:
    # In a child process: the test process itself keeps the interpreter's defaults.
    env = {**os.environ, "BRIGADE_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout.splitlines()[-1])
    assert probe["before"][0] < GC_YOUNG_THRESHOLD == probe["after"][0]
    assert probe["after"][1:] == probe["before"][1:]  # older generations keep their defaults
    assert probe["frozen"] > 10_000  # the imported modules and the app are out of the collector's sight

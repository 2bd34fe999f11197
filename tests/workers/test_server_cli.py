"""``brigade model-server --emulate`` as an operator runs it: a real process on a real port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brigade.net import free_port
from testkit.support import http_ok, poll_until


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from cli.main import main; main()",
        "model-server",
        "--emulate",
        "--port",
        str(port),
        "--rate-429",
        "1",
        "--retry-after-s",
        "3",
    ]
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"model-server exited: {(tmp_path / 'server.log').read_text()}")
            return http_ok(f"{url}/healthz", timeout_s=1.0)

        poll_until(up, timeout_s=30, interval_s=0.1, what="the model server")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def test_emulator_cli_serves_with_the_configured_faults(emulator_process: str) -> None:
    response = httpx.post(f"{emulator_process}/v1/embeddings", json={"input": "x"})
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    config = httpx.get(f"{emulator_process}/_emulator/config").json()
    assert config["rate_429"] == 1.0
    assert httpx.get(f"{emulator_process}/healthz").json()["emulator"] is True

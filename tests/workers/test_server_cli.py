"""``brigade model-server --emulate`` as an operator runs it: a real process on a real port."""

from __future__ import annotations

import os
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


def _start_model_server(
    tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cli = [sys.executable, "-c", "from cli.main import main; main()"]
    command = [*cli, "model-server", "--port", str(port), *args]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, **env}
        )
    return process, f"http://127.0.0.1:{port}"


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> dict[str, object]:
    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"model-server exited: {log.read_text()}")
        return http_ok(f"{url}/healthz", timeout_s=1.0)

    poll_until(up, timeout_s=120, interval_s=0.2, what="the model server")
    body: dict[str, object] = httpx.get(f"{url}/healthz", timeout=5).json()
    return body


@pytest.mark.slow
def test_real_model_server_takes_its_backend_from_settings(tmp_path: Path) -> None:
    env = {"BRIGADE_BUILTIN_MODEL__BACKEND": "onnx", "BRIGADE_BUILTIN_MODEL__THREADS": "1"}
    process, url = _start_model_server(tmp_path, env)
    try:
        health = _wait_healthy(process, url, tmp_path / "server.log")
        assert health == {"status": "ok", "model": "all-MiniLM-L6-v2", "backend": "onnx"}
        body = httpx.post(f"{url}/v1/embeddings", json={"input": "hello"}, timeout=60).json()
        assert len(body["data"][0]["embedding"]) == 384
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"BRIGADE_BUILTIN_MODEL__BACKEND": "tensorflow"}, (), "builtin_model.backend"),
        ({}, ("--threads", "0"), "threads"),
    ],
)
def test_model_server_refuses_a_bad_backend_setting_at_start(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    process, _ = _start_model_server(tmp_path, env, *args)
    assert process.wait(timeout=120) != 0
    assert message in (tmp_path / "server.log").read_text()

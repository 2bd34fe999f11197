"""Clients that offer cleartext HTTP/2 (``Upgrade: h2c``) are served as HTTP/1.1, body and all.

Java's ``HttpClient`` (by default) and ``curl --http2`` add the offer to their first request.
Brigade does not speak h2c, so it must ignore the offer and read the request as it is.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brigade.net import free_port
from schemas import records as r
from testkit.support import poll_until
from tests.ingress.conftest import Api
from tests.ingress.support import commands_for, read_topic
from tests.interop.java_tools import run_java

OFFER = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"


def _head(method: str, path: str, api: Api | None, extra: bytes = b"") -> bytes:
    auth = f"Authorization: Bearer {api.keys['acme']}\r\n".encode() if api else b""
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + auth + OFFER
            + b"Content-Type: application/json\r\n" + extra)


def _read_response(client: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """One response with a Content-Length (as Brigade's are): status line, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, f"connection closed before the head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.decode().partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = client.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return status, headers, body


def _commands(api: Api, job_id: str) -> list[r.SubmitJob]:
    return commands_for(read_topic(api.settings, f"{api.settings.kafka.topic_prefix}.commands"), job_id)


def test_submit_and_batch_offering_h2c_are_answered_with_their_bodies_read(api: Api) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    single = json.dumps({"input": "h2c offered", "priority": "interactive"}).encode()
    batch = json.dumps({"jobs": [{"input": "h2c batch 1"}, {"input": "h2c batch 2"}]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Given a POST /v1/jobs offering h2c, its body in the same segment as its head
        client.sendall(_head("POST", "/v1/jobs", api, b"Content-Length: %d\r\n\r\n" % len(single)) + single)
        status, _, body = _read_response(client)
        # Then it is answered as HTTP/1.1, its body read: 202 with the job's id
        assert status == b"HTTP/1.1 202 Accepted", body
        job_id = json.loads(body)["jobId"]
        # When a batch follows on the same connection, chunked, its head sent apart from its body
        client.sendall(_head("POST", "/v1/jobs:batch", api, b"Transfer-Encoding: chunked\r\n\r\n"))
        half = len(batch) // 2
        client.sendall(b"%x\r\n%s\r\n" % (half, batch[:half]))
        client.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(batch) - half, batch[half:]))
        status, _, body = _read_response(client)
        # Then the batch is read whole too, and the connection stays usable
        assert status == b"HTTP/1.1 200 OK", body
        results = json.loads(body)["results"]
        assert [item["status"] for item in results] == [202, 202]
        client.sendall(_head("GET", f"/v1/jobs/{job_id}", api, b"\r\n"))
        status, _, body = _read_response(client)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["jobId"] == job_id
    # and every job's command is in Kafka with the input that was sent
    [command] = _commands(api, job_id)
    assert json.loads(command.spec.input or "") == "h2c offered"
    for item, text in zip(results, ["h2c batch 1", "h2c batch 2"], strict=True):
        [command] = _commands(api, item["jobId"])
        assert json.loads(command.spec.input or "") == text


def test_a_malformed_body_after_an_h2c_offer_is_still_a_clear_error(api: Api) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
        client.sendall(_head("POST", "/v1/jobs", api, b"Content-Length: 5\r\n\r\n") + b"{nope")
        status, _, body = _read_response(client)
    assert status.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == "malformed_json"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_http_submits_a_job(api: Api) -> None:
    command = ["curl", "-sS", "-v", "--http2", "--max-time", "60", "-X", "POST", f"{api.url}/v1/jobs",
               "-H", f"Authorization: Bearer {api.keys['acme']}", "-H", "Content-Type: application/json",
               "--data", json.dumps({"input": "from curl"}), "-w", "\n%{http_code} %{http_version}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert "> Upgrade: h2c" in result.stderr, "curl did not offer h2c: the test proves nothing"
    body, _, status = result.stdout.rpartition("\n")
    assert status == "202 1.1", result.stdout + result.stderr
    [submitted] = _commands(api, json.loads(body)["jobId"])
    assert json.loads(submitted.spec.input or "") == "from curl"


class _HeadRecorder:
    """A loopback HTTP/1.1 server that records each request's head and answers 200."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(65536)
            self.heads.append(data.partition(b"\r\n\r\n")[0])
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self._thread.join(60)
        self._server.close()


def test_java_http_client_defaults_submit_jobs_and_batches(api: Api, java_classes: tuple[Path, str]) -> None:
    # Given Java's HttpClient with its defaults, which (as the recorder shows) offers h2c
    recorder = _HeadRecorder()
    headers = {"Authorization": f"Bearer {api.keys['acme']}", "Content-Type": "application/json"}
    requests = [
        {"url": recorder.url, "headers": {}, "body": "{}"},
        {"url": f"{api.url}/v1/jobs", "headers": headers, "body": json.dumps({"input": "from java"})},
        {"url": f"{api.url}/v1/jobs:batch", "headers": headers,
         "body": json.dumps({"jobs": [{"input": "java batch"}]})},
    ]
    # When it posts a job and a batch
    try:
        answers = json.loads(run_java(java_classes[1], "HttpPost", stdin=json.dumps(requests)))
    finally:
        recorder.close()
    [offer] = recorder.heads
    assert b"Upgrade: h2c" in offer and b"HTTP2-Settings:" in offer, offer
    # Then both are accepted over HTTP/1.1 and the commands carry what Java sent
    _, single, batch = answers
    assert (single["status"], single["version"]) == (202, "HTTP_1_1"), single
    assert batch["status"] == 200 and json.loads(batch["body"])["accepted"] == 1, batch
    [submitted] = _commands(api, json.loads(single["body"])["jobId"])
    assert json.loads(submitted.spec.input or "") == "from java"


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``brigade model-server`` (the built-in all-MiniLM-L6-v2) as an operator starts it."""
    port, logs = free_port(), tmp_path_factory.mktemp("model-server")
    command = [sys.executable, "-c", "from cli.main import main; main()",
               "model-server", "--port", str(port)]
    with (logs / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=logs)
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: process.poll() is not None or _healthy(url), timeout_s=240, interval_s=0.2)
        assert process.poll() is None, (logs / "server.log").read_text()
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_model_server_reads_the_body_of_a_request_offering_h2c(model_server: str) -> None:
    port = int(model_server.rsplit(":", 1)[1])
    body = json.dumps({"input": ["A man is playing a guitar.", "Brigade"]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as client:
        length = b"Content-Length: %d\r\n\r\n" % len(body)
        client.sendall(_head("POST", "/v1/embeddings", None, length) + body)
        status, _, answer = _read_response(client)
    assert status == b"HTTP/1.1 200 OK", answer
    data = json.loads(answer)["data"]
    assert [d["index"] for d in data] == [0, 1] and len(data[0]["embedding"]) == 384

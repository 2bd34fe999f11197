"""Status, result, events, wait and cancel, read through the projector and chDB."""

from __future__ import annotations

import json
import threading
import time

from schemas import records as r
from tests.ingress.conftest import Api
from tests.ingress.support import commands_for, read_topic, wait_until


def _spec(api: Api, job_id: str) -> r.JobSpec:
    [command] = commands_for(read_topic(api.settings, f"{api.settings.kafka.topic_prefix}.commands"), job_id)
    assert isinstance(command, r.SubmitJob)
    return command.spec


def test_a_job_moves_through_its_states_and_serves_its_result(api: Api) -> None:
    with api.client() as http:
        job_id = http.post("/v1/jobs", json={"input": "embed me"}).json()["jobId"]
        early = http.get(f"/v1/jobs/{job_id}/result")
        assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_succeeded"
        assert http.get(f"/v1/jobs/{job_id}/events").status_code == 200
        spec = _spec(api, job_id)
        api.processor.submitted(spec)
        api.processor.queued(spec)
        api.processor.started(spec)
        wait_until(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"] == "running")
        api.processor.succeeded(spec, json.dumps({"embedding": [0.25, -0.5]}))
        status = wait_until(
            lambda: (s := http.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and s
        )
        assert status["attempts"] >= 1 and status["jobId"] == job_id
        assert {"createdAt", "updatedAt"} <= status.keys()
        result = http.get(f"/v1/jobs/{job_id}/result")
        assert result.status_code == 200
        assert result.json() == {"jobId": job_id, "output": {"embedding": [0.25, -0.5]}}
        events = http.get(f"/v1/jobs/{job_id}/events").json()["events"]
        assert [e["type"] for e in events] == ["JobSubmitted", "JobQueued", "JobStarted", "JobSucceeded"]
        assert [e["sequence"] for e in events] == [1, 2, 3, 4]
        finished = http.post(f"/v1/jobs/{job_id}/cancel")
        assert finished.status_code == 409 and finished.json()["error"]["code"] == "job_finished"


def test_wait_long_polls_until_the_job_finishes(api: Api) -> None:
    with api.client() as http:
        job_id = http.post("/v1/jobs", json={"input": "quick", "priority": "interactive"}).json()["jobId"]
        spec = _spec(api, job_id)

        def finish_soon() -> None:
            time.sleep(0.3)  # the waiting request must already be in flight
            api.processor.submitted(spec)
            api.processor.queued(spec)
            api.processor.started(spec)
            api.processor.succeeded(spec, json.dumps({"embedding": [1.0]}))

        helper = threading.Thread(target=finish_soon)
        helper.start()
        answer = http.post("/v1/jobs?wait=20", json={"input": "quick", "priority": "interactive"})
        helper.join()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["jobId"] == job_id and body["status"] == "succeeded"
    assert body["output"] == {"embedding": [1.0]}


def test_wait_times_out_with_the_current_state(api: Api) -> None:
    with api.client() as http:
        started = time.monotonic()
        answer = http.post("/v1/jobs?wait=0.5", json={"input": "slow"})
        assert time.monotonic() - started >= 0.5
    assert answer.status_code == 202 and answer.json()["status"] == "queued"


def test_cancel_produces_a_cancel_command(api: Api) -> None:
    with api.client() as http:
        job_id = http.post("/v1/jobs", json={"input": "stop me"}).json()["jobId"]
        answer = http.post(f"/v1/jobs/{job_id}/cancel", json={"reason": "changed my mind"})
        assert answer.status_code == 202
        assert answer.json() == {"jobId": job_id, "status": "queued", "cancelRequested": True}
        assert http.post("/v1/jobs/unknown-job/cancel").status_code == 404
        assert http.post(f"/v1/jobs/{job_id}/cancel", content=b"{oops").status_code == 400
    records = commands_for(read_topic(api.settings, f"{api.settings.kafka.topic_prefix}.commands"), job_id)
    cancels = [c for c in records if isinstance(c, r.CancelJob)]
    assert len(cancels) == 1
    assert cancels[0].tenant_id == "acme" and cancels[0].reason == "changed my mind"


def test_conflict_is_detected_from_the_read_model_after_a_restart(api: Api, start_api: object) -> None:
    # Given a job known only to the projection (a fresh API process has no memory of it),
    with api.client() as http:
        job_id = http.post("/v1/jobs", json={"input": "v1"}, headers={"Idempotency-Key": "old"}).json()[
            "jobId"
        ]
    spec = _spec(api, job_id)
    api.processor.submitted(spec)
    with api.client() as http:
        wait_until(lambda: http.get(f"/v1/jobs/{job_id}/events").json()["events"])
    fresh = start_api()  # type: ignore[operator]
    with fresh.client() as http:
        # the same key with another payload is still a conflict, and the same payload a duplicate.
        conflict = http.post("/v1/jobs", json={"input": "v2"}, headers={"Idempotency-Key": "old"})
        same = http.post("/v1/jobs", json={"input": "v1"}, headers={"Idempotency-Key": "old"})
    assert conflict.status_code == 409
    assert same.status_code == 200 and same.json()["jobId"] == job_id


def test_batch_items_get_the_same_admission_as_single_jobs(api: Api, start_api: object) -> None:
    # Given a keyed job known only to the projection (a fresh API process has no memory of it),
    with api.client() as http:
        job_id = http.post("/v1/jobs", json={"input": "v1"}, headers={"Idempotency-Key": "K"}).json()["jobId"]
    api.processor.submitted(_spec(api, job_id))
    with api.client() as http:
        wait_until(lambda: http.get(f"/v1/jobs/{job_id}/events").json()["events"])
    fresh = start_api()  # type: ignore[operator]
    with fresh.client() as http:
        # when a batch reuses the key, the read model is asked as for a single submission,
        items = [
            {"input": "v2", "idempotencyKey": "K"},
            {"input": "v1", "idempotencyKey": "K"},
            {"input": "new"},
            {"input": "new"},
        ]
        answer = http.post("/v1/jobs:batch", json={"jobs": items}).json()
        single = http.post("/v1/jobs", json={"input": "v2"}, headers={"Idempotency-Key": "K"}).json()
    # then the conflict is a 409 with the single route's message, and repeats are duplicates.
    conflict, same, new, again = answer["results"]
    assert conflict["status"] == 409 and conflict["error"] == single["error"]
    assert same["status"] == 200 and same["duplicate"] and same["jobId"] == job_id
    assert new["status"] == 202 and again["status"] == 200 and again["jobId"] == new["jobId"]

"""``POST /v1/jobs:batch`` when the broker does not store the commands: nothing is answered as accepted."""

from __future__ import annotations

from collections.abc import Callable

from brigade.kafka.clients import make_admin
from brigade.kafka.topology import Topology
from tests.ingress.conftest import Api
from tests.ingress.support import wait_until


def _drop_commands_topic(api: Api) -> None:
    # The broker refuses to create topics on its own, so with the topic gone every command's
    # delivery fails: the broker is up and answers, it only cannot store the command.
    admin = make_admin(api.settings)
    commands = Topology(api.settings).commands
    for future in admin.delete_topics([commands], operation_timeout=30).values():
        future.result()
    wait_until(lambda: commands not in admin.list_topics(timeout=10).topics, timeout_s=30)


def test_a_repeat_inside_a_batch_is_not_accepted_when_its_first_copy_was_not_stored(
    start_api: Callable[..., Api],
) -> None:
    # Given an API whose commands cannot be stored
    api = start_api(produce_timeout_s=2.0)
    _drop_commands_topic(api)
    # When one batch carries the same keyed job twice
    job = {"input": "the same job twice", "idempotencyKey": "twice-1"}
    with api.client() as http:
        response = http.post("/v1/jobs:batch", json={"jobs": [job, job]})
    # Then the first copy is refused as not stored, and so is the repeat: a 200 for it
    # would promise a job the log does not hold
    results = response.json()["results"]
    assert [r["status"] for r in results] == [503, 503], results
    assert all(r["error"]["code"] == "broker_unavailable" for r in results), results
    assert response.json()["accepted"] == 0
    assert response.status_code == 503 and response.headers["retry-after"] == "5"

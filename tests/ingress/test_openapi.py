"""The OpenAPI document: valid 3.1, complete, and no generated request makes the API fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ingress.routes import ROUTES
from tests.ingress.conftest import Api

META_SCHEMA = Path(__file__).with_name("data") / "openapi-3.1-schema.json"


def _document(api: Api) -> dict[str, Any]:
    response = httpx.get(f"{api.url}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_document_is_valid_openapi_3_1_and_covers_every_route(api: Api) -> None:
    document = _document(api)
    validator = jsonschema_rs.validator_for(json.loads(META_SCHEMA.read_text()))
    errors = [str(e) for e in validator.iter_errors(document)]
    assert errors == []
    assert document["openapi"].startswith("3.1")
    for route in ROUTES:
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        assert methods <= set(document["paths"][route.path]), route.path
    # Every $ref resolves.
    text = json.dumps(document)
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in document["components"]["schemas"], name
    # Schemathesis loads it too.
    assert len(list(schemathesis.openapi.from_dict(document).get_all_operations())) == len(ROUTES)


def test_generated_requests_never_get_a_server_error(start_api: Any, settings: Any) -> None:
    settings.api.max_wait_s = 0.2  # generated ?wait= values stay short
    api: Api = start_api(tenants={"fuzz": {"requests_per_second": 10_000.0, "jobs_per_second": 100_000.0}})
    schema = schemathesis.openapi.from_dict(_document(api))
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Bearer {api.keys['fuzz']}"}
    failures: list[str] = []

    @hypothesis_settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def explore(data: st.DataObject) -> None:
        for operation in operations:
            case = data.draw(operation.as_strategy())
            response = case.call(base_url=api.url, headers={**(case.headers or {}), **headers})
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
                )

    explore()
    assert failures == []

"""The whole OpenAPI document, property-based (schemathesis) against a real `genqueue api`: no answer is a 5xx,
and every answer keeps to the document (status, content type, headers, body schema)."""

from __future__ import annotations

import json
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

#: generated requests per operation
EXAMPLES = 30
#: what a request must satisfy beyond its schema cannot all be said in one: a provider is a deployment's settings,
#: a model its provider's catalog, an option the model's. So a schema-valid body may rightly be refused (422), and
#: schemathesis's check that every schema-valid request is accepted does not apply; every other check does.
NOT_EXPRESSIBLE = [schemathesis.checks.positive_data_acceptance]


@schemathesis.serializer("application/x-ndjson")
def _json_lines(context: object, value: object) -> bytes:
    """A batch body as the document describes it (an array of lines) sent as JSON Lines, one line each."""
    lines = value if isinstance(value, list) else [value]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_the_api_keeps_to_its_openapi_document(api_url: str, pipeline_env: dict[str, str]) -> None:
    result = run_cli(pipeline_env, "keys", "create", f"fuzz-{uuid.uuid4().hex[:8]}", "--json")
    assert result.returncode == 0, result.stderr
    bearer = {"Authorization": f"Bearer {json.loads(result.stdout)['key']}"}
    # loaded here rather than with schemathesis.pytest.from_fixture, which pytest 9 breaks (no Function._nodeid)
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    checked = []
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def keeps_to_it(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=api_url, headers=bearer, timeout=30, excluded_checks=NOT_EXPRESSIBLE)

        keeps_to_it()
        checked.append(operation.label)
    assert {
        "POST /v1/jobs",
        "GET /v1/jobs",
        "GET /v1/jobs/{job_id}",
        "GET /v1/jobs/{job_id}/events",
        "POST /v1/batches",
        "GET /v1/batches/{name}/report",
        "GET /v1/providers",
    } <= set(checked)

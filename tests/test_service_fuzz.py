"""Schemathesis against the running service's own OpenAPI document: no 5xx, responses as documented.

The server here runs without JOURNEY_API_TOKEN (the default), so it also shows that auth is off
unless configured.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from serving_fixtures import run_service, service_model  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_service(service_model, tmp_path_factory):  # noqa: F811
    with run_service(service_model, tmp_path_factory.mktemp("fuzz")) as svc:
        yield svc


@pytest.fixture(scope="module")
def api_schema(fuzz_service):
    return schemathesis.openapi.from_url(f"{fuzz_service.url}/docs.json", timeout=60)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _schemathesis_pytest9_shim(request):
    """schemathesis 4.32's lazy loader reads ``node._nodeid``, which pytest 9 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def test_auth_is_off_by_default(fuzz_service):
    r = httpx.get(fuzz_service.url + "/metadata", timeout=60)
    assert r.status_code == 200 and r.json()["auth_required"] is False
    doc = httpx.get(fuzz_service.url + "/docs.json", timeout=60).json()
    assert "security" not in doc["paths"]["/predict"]["post"]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_openapi_document(case, fuzz_service):
    case.call_and_validate(base_url=fuzz_service.url, checks=[not_a_server_error, response_schema_conformance], timeout=120)

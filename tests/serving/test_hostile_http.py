"""Hostile input over HTTP (issue 13 defect 10, HTTP part): values a typed API must not coerce,
problem counts that must not stop at a cap, huge values that must not come back in full, and
malformed bodies that must be one JSON 400, never a 5xx or a traceback. One real `journey serve`
for the module, called with httpx."""

from __future__ import annotations

import json

import httpx
import pytest

from serving_fixtures import AS_OF, bad_timestamps_body, run_service, service_model  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

GOOD = {"timestamp": "2025-03-01T10:00:00Z", "event_type": "product_view"}
HUGE = 4 * 1024 * 1024  # characters of a hostile text value (the body limit is 5 MB)
MAX_ERROR_BYTES = 32 * 1024  # an error answer never carries more than this


@pytest.fixture(scope="module")
def client(service_model, tmp_path_factory):  # noqa: F811
    with run_service(service_model, tmp_path_factory.mktemp("hostile")) as svc:
        with httpx.Client(base_url=svc.url, timeout=120) as c:
            yield c


def post(client: httpx.Client, body) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/predict", content=raw, headers={"content-type": "application/json"})


def problems(r: httpx.Response) -> dict[str, dict]:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert "Traceback" not in r.text and 'File "' not in r.text
    body = r.json()
    assert body["error"] and len(r.content) <= MAX_ERROR_BYTES, len(r.content)
    return {p["path"]: p for p in body["problems"]}


def one_event(**fields) -> dict:
    return {"customers": [{"customer_id": "c1", "events": [dict(GOOD, **fields)]}], "as_of": AS_OF}


# ---- values a typed API must not coerce ---------------------------------------------------------

@pytest.mark.parametrize("value", [True, False, "12.5", "0", [1.0], {"amount": 1}])
def test_value_must_be_a_json_number_or_null(client, value):
    r = post(client, one_event(value=value))
    assert r.status_code == 400, r.text
    p = problems(r)["customers[0].events[0].value"]
    assert p["code"] == "float_type"
    assert p["message"].startswith("expected a JSON number or null, got ")


@pytest.mark.parametrize("value", [12, 12.5, 0, None])
def test_numbers_and_null_are_values(client, value):
    r = post(client, one_event(value=value))
    assert r.status_code == 200, r.text


# ---- every problem counted -------------------------------------------------------------------------

def test_every_problem_is_counted_and_a_hundred_listed(client):
    r = post(client, bad_timestamps_body(customers=12, events=5000))
    assert r.status_code == 400
    listed = problems(r)
    body = r.json()
    assert body["total_problems"] == 60_000
    assert body["error"] == "invalid request: 60000 problem(s)"
    assert len(listed) == 100 and {p["code"] for p in listed.values()} == {"bad_timestamp"}


def test_structural_problems_are_all_counted_too(client):
    events = [dict(GOOD, value="x")] * 4000 + [dict(GOOD, colour="red")] * 4000
    r = post(client, {"customers": [{"customer_id": "c1", "events": events[:4000]}, {"customer_id": "c2", "events": events[4000:]}]})
    assert r.status_code == 400
    problems(r)
    assert r.json()["total_problems"] == 8000


# ---- huge values are not sent back ------------------------------------------------------------

@pytest.mark.parametrize(
    "make, path, code",
    [
        (lambda big: {"customers": [{"customer_id": big, "events": [GOOD]}]}, "customers[0].customer_id", "text_too_long"),
        (lambda big: {"customers": [{"customer_id": big, "events": []}]}, "customers[0].customer_id", "text_too_long"),
        (lambda big: {"customers": [{"customer_id": "c", "events": [dict(GOOD, timestamp=big)]}]}, "customers[0].events[0].timestamp", "bad_timestamp"),
        (lambda big: {"customers": [{"customer_id": "c", "events": [dict(GOOD, event_type=big)]}]}, "customers[0].events[0].event_type", "text_too_long"),
        (lambda big: {"customers": [{"customer_id": "c", "events": [dict(GOOD, channel=big)]}]}, "customers[0].events[0].channel", "text_too_long"),
        (lambda big: {"customers": [{"customer_id": "c", "events": [dict(GOOD, campaign=big)]}]}, "customers[0].events[0].campaign", "text_too_long"),
        (lambda big: {"customers": [{"customer_id": "c", "events": [GOOD]}], "as_of": big}, "as_of", "bad_timestamp"),
    ],
    ids=["customer_id", "customer_id_without_events", "timestamp", "event_type", "channel", "campaign", "as_of"],
)
def test_a_huge_value_is_not_echoed(client, make, path, code):
    big = "7" + "x" * (HUGE - 1)
    r = post(client, make(big))
    assert r.status_code == 400, r.text[:300]
    p = problems(r)[path]
    assert p["code"] == code
    assert "x" * 300 not in r.text  # at most a short prefix of the value comes back
    if code == "text_too_long":
        assert p["message"] == f"expected at most 256 characters, got {HUGE}"


def test_text_at_the_limit_is_accepted(client):
    r = post(client, {"customers": [{"customer_id": "c" * 256, "events": [dict(GOOD, campaign="k" * 256)]}], "as_of": AS_OF})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["predictions"][0]["customer_id"] == "c" * 256


# ---- malformed bodies: one JSON 400, never a 5xx -----------------------------------------------------

@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested
        b'{"customers": [{"customer_id": "c", "events": [{"timestamp": "2025-03-01", "event_type": "product_view"}]}]',  # truncated
        b'{"customers": [], "customers": "twice"}',  # a key twice
        b'{"customers": [{"customer_id": "\xff\xfe", "events": []}]}',  # not UTF-8
        b'{"customers": [{"customer_id": "c", "events": [{"timestamp": "2025-03-01", "event_type": "purchase", "value": NaN}]}]}',
        b'{"customers": [{"customer_id": "c", "events": [{"timestamp": "2025-03-01", "event_type": "purchase", "value": 1e400}]}]}',
        b'{"customers": [{"customer_id": "c", "events": [{"timestamp": "2025-03-01", "event_type": "purchase", "value": 1' + b"0" * 5000 + b"}]}]}",
        b'{"customers": [{"customer_id": "\\u0000", "events": [{"timestamp": "2025-03-01", "event_type": "purchase"}]}]}',
        b'{"customers": [{"customer_id": "c", "events": [{"timestamp": "2025-03-01T10:00:00\\u202e", "event_type": "purchase"}]}]}',
        b"",
        b"null",
    ],
    ids=["nested", "truncated", "duplicate_key", "not_utf8", "nan", "overflow", "long_number", "nul_id", "bidi_timestamp", "empty", "null"],
)
def test_malformed_bodies_are_one_json_400(client, raw):
    r = post(client, raw)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    problems(r)


def test_service_still_answers_after_the_hostile_input(client):
    r = post(client, one_event())
    assert r.status_code == 200, r.text
    assert client.get("/livez").status_code == 200

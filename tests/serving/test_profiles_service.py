"""Live profiles over HTTP, end to end: a real `journey serve` with two workers and a profile store
(a SQLite file, or a real `redis-server` on loopback). Events go in through `journey profiles load`
and through `POST /events` in shuffled batches; predictions by id must equal `POST /predict` with
the same events sent and `journey score` on the same file, as of the same time."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest

from redis_fixtures import redis_url  # noqa: F401 - fixture
from serving_fixtures import AS_OF, ROOT, assert_close, payload_of, run_service, service_model  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

TOKEN = "profiles-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = httpx.Timeout(120.0)
ADMIT_ALL = {"JOURNEY_MAX_CONCURRENCY": "64", "JOURNEY_QUEUE_LENGTH": "64", "JOURNEY_QUEUE_WAIT_MS": "60000"}


@pytest.fixture(scope="module")
def events(service_model):  # noqa: F811
    return pd.read_parquet(service_model.events_path)


@pytest.fixture(scope="module")
def groups(events):
    """Two disjoint sets of customers active in the 60 days before AS_OF with at most 300 events:
    one loaded with `journey profiles load`, one sent to POST /events."""
    t = pd.Timestamp(AS_OF)
    before = events[events["timestamp"] <= t]
    last = before.groupby("customer_id")["timestamp"].max()
    sizes = events.groupby("customer_id").size()
    ids = sorted(c for c in last[last > t - pd.Timedelta(days=60)].index if sizes[c] <= 300)
    random.Random(4).shuffle(ids)
    assert len(ids) >= 16
    return ids[:8], ids[8:16]


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_url(request, tmp_path_factory):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('profiles') / 'profiles.db'}"
    import redis

    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def service(service_model, store_url, tmp_path_factory):  # noqa: F811
    env = {"JOURNEY_API_TOKEN": TOKEN, "JOURNEY_WORKERS": "2", "JOURNEY_PROFILE_STORE": store_url} | ADMIT_ALL
    with run_service(service_model, tmp_path_factory.mktemp("psvc"), env) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, timeout=TIMEOUT, headers=AUTH) as c:
        yield c


def event_rows(events: pd.DataFrame, ids: list[str]) -> list[dict]:
    return [dict(e, customer_id=c["customer_id"]) for c in payload_of(events, ids) for e in c["events"]]


def by_id(client, ids: list[str]) -> dict:
    r = client.post("/predict", json={"customers": [{"customer_id": c} for c in ids], "as_of": AS_OF})
    assert r.status_code == 200, r.text
    return {p["customer_id"]: p for p in r.json()["predictions"]}


def cli(service_model, store_url: str, *args: str) -> subprocess.CompletedProcess:  # noqa: F811
    env = service_model.env() | {"JOURNEY_PROFILE_STORE": store_url}
    return subprocess.run([sys.executable, "-m", "journey_stage.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def loaded(service_model, store_url, client, events, groups, tmp_path_factory):  # noqa: F811
    """Group one loaded from a file by `journey profiles load`, group two posted in shuffled batches
    of 37 events (some batches sent twice: duplicates)."""
    one, two = groups
    folder = tmp_path_factory.mktemp("load")
    file_one = folder / "one.csv"
    events[events["customer_id"].isin(one)].sample(frac=1.0, random_state=2).to_csv(file_one, index=False)
    done = cli(service_model, store_url, "profiles", "load", "--events", str(file_one))
    assert done.returncode == 0, done.stderr
    n_one = int(events["customer_id"].isin(one).sum())
    assert f"stored {n_one:,} events" in done.stdout
    rows = event_rows(events, two)
    random.Random(5).shuffle(rows)
    batches = [rows[i:i + 37] for i in range(0, len(rows), 37)]
    stored = dups = 0
    for b in batches + batches[:3]:
        r = client.post("/events", json={"events": b})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["received"] == len(b) and body["stored"] + body["duplicates"] == len(b)
        stored, dups = stored + body["stored"], dups + body["duplicates"]
    assert stored == len(rows) and dups == sum(len(b) for b in batches[:3])
    both = folder / "both.parquet"
    events[events["customer_id"].isin(one + two)].to_parquet(both, index=False)
    return {"one": one, "two": two, "file": both}


def test_prediction_by_id_equals_events_sent_and_batch(service_model, store_url, client, events, loaded, tmp_path):  # noqa: F811
    ids = loaded["one"] + loaded["two"]
    stored = by_id(client, ids)
    sent = client.post("/predict", json={"customers": payload_of(events, ids), "as_of": AS_OF})
    assert sent.status_code == 200, sent.text
    sent = {p["customer_id"]: p for p in sent.json()["predictions"]}
    out = tmp_path / "scores.parquet"
    done = cli(service_model, store_url, "score", "--events", str(loaded["file"]), "--as-of", AS_OF, "--out", str(out), "--reasons")
    assert done.returncode == 0, done.stderr
    batch = pd.read_parquet(out).set_index("customer_id")
    for cid in ids:
        assert stored[cid]["stage"] is not None and not any(w["code"] == "no_history" for w in stored[cid]["warnings"])
        assert_close(stored[cid], sent[cid], f"$[{cid}]")
        row = batch.loc[cid]
        assert stored[cid]["stage"] == row["stage"]
        assert_close(stored[cid]["churn_probability"], None if pd.isna(row["churn_probability"]) else float(row["churn_probability"]))
        for s, p in stored[cid]["stage_probabilities"].items():
            assert_close(p, float(row[f"stage_probability_{s}"]))
        assert stored[cid]["reasons"] == json.loads(row["reasons"])
        assert stored[cid]["next_best_action"]["action"] == row["next_best_action"]


def test_sent_events_are_merged_with_stored_ones(client, events, loaded):
    cid = loaded["two"][0]
    full = payload_of(events, [cid])[0]["events"]
    half = full[: len(full) // 2 + 1]  # overlaps the stored history: duplicates of stored events
    merged = client.post("/predict", json={"customers": [{"customer_id": cid, "events": half}], "as_of": AS_OF}).json()["predictions"][0]
    assert_close(merged, by_id(client, [cid])[cid])
    assert not any(w["code"] == "duplicate_events_removed" for w in merged["warnings"])
    stored = client.get(f"/customers/{cid}/events").json()
    assert stored["count"] == len(full)  # a prediction never stores what it was sent


def test_stored_history_is_returned_in_time_order(client, events, loaded):
    cid = loaded["one"][0]
    body = client.get(f"/customers/{cid}/events").json()
    own = events[events["customer_id"] == cid]
    assert body["customer_id"] == cid and body["count"] == len(own) == len(body["events"])
    stamps = [pd.Timestamp(e["timestamp"]) for e in body["events"]]
    assert stamps == sorted(stamps) and stamps[0] == own["timestamp"].min()
    assert sorted(e["event_type"] for e in body["events"]) == sorted(own["event_type"])


def test_unknown_id_says_no_history(client):
    p = by_id(client, ["never-seen"])["never-seen"]
    assert p["stage"] is None and [w["code"] for w in p["warnings"]] == ["no_history"]


def test_erasure_leaves_nothing_and_predictions_say_no_history(client, store_url, events, loaded):
    cid = loaded["two"][-1]
    n = int((events["customer_id"] == cid).sum())
    r = client.delete(f"/customers/{cid}")
    assert r.status_code == 200 and r.json() == {"customer_id": cid, "deleted": n}
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url[len("sqlite:///"):]) as conn:
            assert conn.execute("SELECT COUNT(*) FROM events WHERE customer_id = ?", (cid,)).fetchone()[0] == 0
    else:
        import redis

        keys = redis.Redis.from_url(store_url).keys(f"*{cid}*")
        assert keys == []
    assert client.get(f"/customers/{cid}/events").json()["count"] == 0
    assert [w["code"] for w in by_id(client, [cid])[cid]["warnings"]] == ["no_history"]
    assert client.delete(f"/customers/{cid}").json()["deleted"] == 0


def test_events_are_validated_like_predict_events(client):
    bad = {"events": [
        {"customer_id": "v1", "timestamp": "2025-01-01T00:00:00Z", "event_type": "purchase"},
        {"customer_id": "v1", "timestamp": "yesterday", "event_type": "purchase"},
        {"customer_id": "v1", "timestamp": "2025-01-02T00:00:00Z", "event_type": "teleport"},
    ]}
    r = client.post("/events", json=bad)
    assert r.status_code == 400, r.text
    paths = {p["path"]: p["code"] for p in r.json()["problems"]}
    assert paths == {"events[1].timestamp": "bad_timestamp", "events[2].event_type": "unknown_event_type"}
    assert client.get("/customers/v1/events").json()["count"] == 0  # nothing of a rejected request is stored
    r = client.post("/events", json={"events": [{"timestamp": "2025-01-01T00:00:00Z", "event_type": "purchase"}]})
    assert r.status_code == 400 and r.json()["problems"][0]["path"] == "events[0].customer_id"


def test_profile_endpoints_need_the_token(service):
    for method, path in (("POST", "/events"), ("GET", "/customers/c1/events"), ("DELETE", "/customers/c1")):
        r = httpx.request(method, service.url + path, json={"events": []} if method == "POST" else None, timeout=TIMEOUT)
        assert r.status_code == 401, (method, path, r.status_code)


def test_concurrent_ingest_and_predict_store_every_event_once(client, service, events, groups):
    """Four ingesting clients (overlapping batches: every event sent twice) and two predicting
    clients against two workers: no request fails, every event is stored exactly once."""
    t = pd.Timestamp(AS_OF)
    fresh = sorted(set(events.loc[events["timestamp"] <= t, "customer_id"]) - set(groups[0]) - set(groups[1]))[:40]
    rows = event_rows(events, fresh)
    random.Random(6).shuffle(rows)
    batches = [rows[i:i + 50] for i in range(0, len(rows), 50)]
    work = [("events", b) for b in batches] + [("events", b) for b in reversed(batches)]
    work += [("predict", [fresh[i % len(fresh)], groups[0][i % 8]]) for i in range(60)]
    random.Random(7).shuffle(work)

    def call(item):
        kind, arg = item
        with httpx.Client(base_url=service.url, timeout=TIMEOUT, headers=AUTH) as c:
            if kind == "events":
                return kind, c.post("/events", json={"events": arg})
            return kind, c.post("/predict", json={"customers": [{"customer_id": x} for x in arg], "as_of": AS_OF})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(call, work))
    assert [r.status_code for _, r in answers] == [200] * len(answers)
    stored = sum(r.json()["stored"] for k, r in answers if k == "events")
    dups = sum(r.json()["duplicates"] for k, r in answers if k == "events")
    assert stored == len(rows) and dups == len(rows)
    for cid in fresh:
        assert client.get(f"/customers/{cid}/events").json()["count"] == int((events["customer_id"] == cid).sum())


def test_store_off_needs_events_in_predict(service_model):  # noqa: F811
    """JOURNEY_PROFILE_STORE=none: a customer without events is a field-level 400 (in-process)."""
    from journey_stage.serving.problems import RequestProblems
    from journey_stage.serving.requests import score_request
    from journey_stage.serving.schemas import request_models
    from journey_stage.core.runtime import RuntimeSettings

    customer = request_models(RuntimeSettings()).customer(customer_id="c1")
    with pytest.raises(RequestProblems) as info:
        score_request(service_model.load_predictor(), [customer], AS_OF, store=None)
    assert info.value.status == 400 and info.value.problems[0]["path"] == "customers[0].events"


def test_profile_endpoints_are_documented_and_other_paths_are_not_found(client):
    doc = client.get("/docs.json").json()
    assert {"/events", "/customers/{customer_id}/events", "/customers/{customer_id}"} <= set(doc["paths"])
    assert {"400", "401", "413", "429"} <= set(doc["paths"]["/events"]["post"]["responses"])
    assert set(doc["paths"]["/customers/{customer_id}"]) == {"delete"}
    for path in ("/customers", "/customers/", "/customers/c1/other", "/eventsx"):
        r = client.get(path)
        assert r.status_code in (404, 405), (path, r.status_code)

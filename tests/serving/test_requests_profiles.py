"""Predictions with a profile store, in-process (``score_request``): stored and sent events merged
on both request paths (plain input without a DataFrame, other spellings through the general
validation), by id, and a failing store as a 503 that names it without its password."""

from __future__ import annotations

import pandas as pd
import pytest

from journey_stage.core.events import canonical_events
from journey_stage.core.runtime import RuntimeSettings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.serving.profiles import Retention, open_store
from journey_stage.serving.problems import RequestProblems
from journey_stage.serving.requests import score_request
from journey_stage.serving.schemas import request_models
from processes import free_port
from serving_fixtures import AS_OF, assert_close, payload_of, service_model  # noqa: F401 (fixture)

CustomerIn = request_models(RuntimeSettings()).customer


@pytest.fixture(scope="module")
def predictor(service_model):  # noqa: F811
    return service_model.load_predictor()


@pytest.fixture(scope="module")
def history(service_model):  # noqa: F811
    events = pd.read_parquet(service_model.events_path)
    t = pd.Timestamp(AS_OF)
    recent = events[(events["timestamp"] <= t) & (events["timestamp"] > t - pd.Timedelta(days=30))]
    cid = recent["customer_id"].value_counts().index[0]
    return payload_of(events, [cid])[0]


def _respelled(evs: list[dict]) -> list[dict]:
    """The same instants with surrounding whitespace (valid, but not the plain fast path)."""
    from journey_stage.core.events import canonical_rows

    out = [dict(e, timestamp=f" {e['timestamp']} ") for e in evs]
    assert canonical_rows([("c", e["timestamp"], e["event_type"], None, None, None) for e in out], load_taxonomy("five_stage")) is None
    return out


@pytest.mark.parametrize("spelling", ["plain", "respelled"])
def test_sent_and_stored_events_are_merged(predictor, history, tmp_path, spelling):
    cid, evs = history["customer_id"], sorted(history["events"], key=lambda e: e["timestamp"])
    expected = score_request(predictor, [CustomerIn(customer_id=cid, events=evs)], AS_OF)
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, Retention())
    first, rest = evs[: len(evs) // 2 + 2], evs[len(evs) // 2:]  # two overlapping halves
    raw = pd.DataFrame([dict(e, customer_id=cid) for e in first])
    store.add(canonical_events(raw, "test", predictor.taxonomy).events)
    sent = rest if spelling == "plain" else _respelled(rest)
    merged = score_request(predictor, [CustomerIn(customer_id=cid, events=sent)], AS_OF, store=store)
    by_id = score_request(predictor, [CustomerIn(customer_id=cid)], AS_OF, store=store)
    assert_close(merged, expected)
    assert_close(by_id, score_request(predictor, [CustomerIn(customer_id=cid, events=first)], AS_OF))
    store.close()


@pytest.mark.parametrize("url", ["redis://user:s3cret@127.0.0.1:{port}/0", "redis://127.0.0.1:{port}/0?password=s3cret"])
def test_a_failing_store_is_a_503_that_shows_nothing_of_it(predictor, history, tmp_path, caplog, url):
    """By id, a store that does not answer is a 503 whose body names neither the store's host nor
    its password; the log has the reason (password hidden)."""
    store = open_store(url.format(port=free_port()), tmp_path, Retention())  # nothing listens there
    with pytest.raises(RequestProblems) as info, caplog.at_level("WARNING", logger="bentoml.journey"):
        score_request(predictor, [CustomerIn(customer_id="c1")], AS_OF, store=store)
    assert info.value.status == 503
    text = str(info.value.body())
    assert "profile store" in text and "s3cret" not in text and "127.0.0.1" not in text
    assert "127.0.0.1" in caplog.text and "s3cret" not in caplog.text


def test_a_failing_store_still_answers_customers_sent_with_events(predictor, history, tmp_path):
    store = open_store(f"redis://127.0.0.1:{free_port()}/0", tmp_path, Retention())
    customer = CustomerIn(customer_id=history["customer_id"], events=history["events"])
    alone = score_request(predictor, [customer], AS_OF)[0]
    degraded = score_request(predictor, [customer], AS_OF, store=store)[0]
    assert sorted(w["code"] for w in degraded["warnings"]) == sorted([w["code"] for w in alone["warnings"]] + ["profile_store_unavailable"])
    assert_close({k: v for k, v in degraded.items() if k != "warnings"}, {k: v for k, v in alone.items() if k != "warnings"})


def test_stored_events_of_types_the_model_does_not_know_are_ignored_with_a_warning(predictor, history, tmp_path):
    """Events loaded under another taxonomy (here an event type five_stage does not have) do not
    turn a prediction into a 500: they are left out and counted in a warning."""
    from journey_stage.core.events import tuples_frame

    cid, evs = history["customer_id"], history["events"]
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, Retention())
    raw = pd.DataFrame([dict(e, customer_id=cid) for e in evs])
    store.add(canonical_events(raw, "test", predictor.taxonomy).events)
    store.add(tuples_frame([(cid, 1_764_000_000_000_000, "attention_grabbed", None, None, None)] * 1
                           + [(cid, 1_764_000_000_000_001, "attention_grabbed", None, None, None)]))
    expected = score_request(predictor, [CustomerIn(customer_id=cid, events=evs)], AS_OF)[0]
    got = score_request(predictor, [CustomerIn(customer_id=cid)], AS_OF, store=store)[0]
    ignored = [w for w in got["warnings"] if w["code"] == "stored_events_ignored"]
    assert len(ignored) == 1 and ignored[0]["count"] == 2
    assert_close({k: v for k, v in got.items() if k != "warnings"}, {k: v for k, v in expected.items() if k != "warnings"})
    store.close()

"""The profile stores (SQLite and a real Redis server): canonical events in, the same canonical
events out; exact duplicates stored once; retention; erasure checked in the store itself."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from journey_stage.core.events import canonical_events
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.serving.profiles import Retention, open_store
from journey_stage.synthetic.generate import generate_events
from redis_fixtures import redis_url  # noqa: F401 - fixture

TAX = load_taxonomy("five_stage")


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return canonical_events(generate_events(60, seed=11), "generated", TAX).events


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'p.db'}", tmp_path, Retention())
    else:
        url = request.getfixturevalue("redis_url")
        s = open_store(url, tmp_path, Retention())
        s.client.flushdb()
    yield s
    s.close()


def test_round_trip_equals_the_canonical_frame(store, events):
    stored, dup = store.add(events.sample(frac=1.0, random_state=1))  # out of order
    assert (stored, dup) == (len(events), 0)
    back = store.history(events["customer_id"].unique())
    pd.testing.assert_frame_equal(back, events.reset_index(drop=True))


def test_exact_duplicates_are_stored_once(store, events):
    first = events.iloc[:50]
    assert store.add(first) == (50, 0)
    assert store.add(pd.concat([first.iloc[:10], events.iloc[50:60]])) == (10, 10)
    changed = first.iloc[:1].assign(value=123.0)  # one column differs: a new event
    assert store.add(changed) == (1, 0)


def test_erasure_leaves_nothing_in_the_store(store, events, tmp_path):
    store.add(events)
    cid = events["customer_id"].iloc[0]
    n = int((events["customer_id"] == cid).sum())
    assert store.delete(cid) == n
    assert store.count(cid) == 0 and store.history([cid]).empty
    if hasattr(store, "path"):
        with sqlite3.connect(store.path) as c:
            assert c.execute("SELECT COUNT(*) FROM events WHERE customer_id = ?", (cid,)).fetchone()[0] == 0
            assert c.execute("SELECT COUNT(*) FROM bounds WHERE customer_id = ?", (cid,)).fetchone()[0] == 0
    else:
        assert not store.client.exists(store.key(cid))
    assert store.delete(cid) == 0


def test_retention_keeps_the_newest_events(tmp_path, events, request):
    for kind in ("sqlite", "redis"):
        url = f"sqlite:///{tmp_path / kind}.db" if kind == "sqlite" else request.getfixturevalue("redis_url")
        s = open_store(url, tmp_path, Retention(max_events=5))
        if kind == "redis":
            s.client.flushdb()
        s.add(events)
        for cid, own in events.groupby("customer_id"):
            kept = s.history([cid])
            assert len(kept) == min(5, len(own))
            assert (kept["timestamp"].min() >= own["timestamp"].sort_values().iloc[-min(5, len(own))])
        s.close()


def test_unknown_customers_have_an_empty_history(store):
    assert store.history(["nobody"]).empty and list(store.history([]).columns) == ["customer_id", "timestamp", "event_type", "channel", "value", "campaign"]


def test_an_unknown_store_url_is_one_config_error(tmp_path):
    from journey_stage.core.errors import ConfigError

    with pytest.raises(ConfigError):
        open_store("mongodb://x", tmp_path, Retention())


def test_sqlite_retention_bounds_never_fall_below_the_stored_counts(tmp_path, events):
    """Retention counts only customers whose bound (rows sent, reset to the exact count when
    trimmed) passes the limit: the bound stays >= the stored count through duplicates, trims,
    erasure and a store written before bounds existed (rebuilt on open)."""
    path = tmp_path / "b.db"
    s = open_store(f"sqlite:///{path}", tmp_path, Retention(max_events=8))
    s.add(events)
    s.add(events.iloc[::2])  # duplicates: bounds grow, counts do not
    with sqlite3.connect(path) as c:
        rows = c.execute("SELECT e.customer_id, COUNT(*), b.n FROM events e JOIN bounds b USING (customer_id) GROUP BY e.customer_id").fetchall()
        assert rows and all(stored <= 8 and stored <= bound for _, stored, bound in rows)
        c.execute("DROP TABLE bounds")  # a store from before bounds
    s.close()
    s = open_store(f"sqlite:///{path}", tmp_path, Retention(max_events=3))
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT COUNT(*) FROM bounds").fetchone()[0] == events["customer_id"].nunique()
    s.add(events.iloc[:1])
    cid = events["customer_id"].iloc[0]
    assert s.count(cid) == min(3, int((events["customer_id"] == cid).sum()))
    s.close()

"""Live customer profiles: the stored event history of each customer, answered by id.

A store keeps *canonical* events (after the same validation as ``/predict`` and batch files) and
gives them back as a canonical events frame, so a prediction by id goes through the one
feature and scoring path (:func:`journey_stage.model.scoring.score_records`); nothing is
pre-aggregated. Exact duplicates (every column equal, SPEC section 2) are stored once; late and
out-of-order events are fine (features use event time).

Stores, named by URL (``JOURNEY_PROFILE_STORE``):

- ``sqlite:///PATH`` (default: ``profiles.db`` under ``JOURNEY_HOME``): one file, WAL mode, shared
  safely by the service's worker processes on one machine;
- ``redis://HOST:PORT/DB``: a Redis server shared by several service replicas (one sorted set
  per customer, scored by event time; members are the canonical event as JSON).

Retention: at most ``max_events`` newest events per customer and, optionally, none older than
``max_age_days`` before the customer's newest event. Truncation changes all-time features (counts,
first-event recency) of long histories: a customer is then scored on its retained history only.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from journey_stage.core.errors import ConfigError, ProfileStoreError, profile_store_failed
from journey_stage.core.runtime import redact
from journey_stage.core.events import sort_events, tuples_frame

US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Retention:
    max_events: int = 5000  # newest events kept per customer
    max_age_days: float | None = None  # events older than this before the customer's newest are dropped


class ProfileStore(Protocol):
    def add(self, events: pd.DataFrame) -> tuple[int, int]:
        """Store canonical events; ``(stored, duplicates)``."""

    def history(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        """The stored events of these customers, a canonical events frame."""

    def history_rows(self, customer_ids: Iterable[str]) -> list[tuple]:
        """The same as canonical ``(customer_id, microseconds, event_type, channel, value,
        campaign)`` tuples (None where missing), in no particular order."""

    def delete(self, customer_id: str) -> int:
        """Erase every stored event of a customer; how many there were."""

    def ping(self) -> None:
        """Raise :class:`ProfileStoreError` unless the backend answers."""

    def close(self) -> None: ...


def _texts(s: pd.Series, missing: str | None) -> list:
    """A text column as Python strings (``missing`` where absent), each distinct string converted
    once (factorized: a column of a few event types or channels costs one lookup per row)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return np.array([*uniques, missing], dtype=object)[codes].tolist()


def _numbers(s: pd.Series, missing: float | None) -> list:
    values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    nan = np.isnan(values)
    if not nan.any():
        return values.tolist()
    out = values.astype(object)
    out[nan] = missing
    return out.tolist()


def event_columns(events: pd.DataFrame, no_text: str | None = None, no_value: float | None = None) -> tuple[list, ...]:
    """Canonical events as plain Python columns: customer_id, ts (microseconds), event_type,
    channel, value, campaign (``no_text`` / ``no_value`` where missing: None by default)."""
    if not len(events):
        return [], [], [], [], [], []
    return (_texts(events["customer_id"], no_text), events["timestamp"].array.asi8.tolist(), _texts(events["event_type"], no_text),
            _texts(events["channel"], no_text), _numbers(events["value"], no_value), _texts(events["campaign"], no_text))


def _rows(events: pd.DataFrame) -> list[tuple]:
    return list(zip(*event_columns(events)))


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """Plain tuples back to the canonical events frame (types and order of core.events)."""
    return sort_events(tuples_frame(rows))


def _event_json(row: tuple) -> str:
    return json.dumps(list(row[1:]), separators=(",", ":"))


def _backend_errors() -> tuple[type[BaseException], ...]:
    import redis

    return sqlite3.Error, OSError, redis.RedisError


def guarded(method):
    """A store method whose backend failures (SQLite, the file system, Redis) become one
    :class:`ProfileStoreError` naming the store (its URL with any password hidden)."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except ProfileStoreError:
            raise
        except _backend_errors() as exc:
            raise profile_store_failed(self.where, exc) from None

    return call


# SQLite primary-key columns cannot be NULL: missing optional values are stored as sentinels no
# canonical event can hold (blank text is missing, values are >= 0).
_NO_TEXT, _NO_VALUE = "", -1.0
SQLITE_COLUMNS = ("customer_id", "ts", "event_type", "channel", "value", "campaign")


ROWS_PER_INSERT = 100  # rows bound per INSERT statement: the per-statement cost of the sqlite3 module is paid once per 100 rows


@functools.lru_cache(maxsize=8)
def _insert_sql(rows: int) -> str:
    return "INSERT OR IGNORE INTO events VALUES " + ",".join(["(?,?,?,?,?,?)"] * rows)


def _insert(conn: sqlite3.Connection, flat: list, n: int) -> None:
    """``INSERT OR IGNORE`` of ``n`` rows whose parameters are ``flat`` (6 per row, in order)."""
    step, full = 6 * ROWS_PER_INSERT, n - n % ROWS_PER_INSERT
    if full:
        conn.executemany(_insert_sql(ROWS_PER_INSERT), (flat[i: i + step] for i in range(0, 6 * full, step)))
    if n > full:
        conn.execute(_insert_sql(n - full), flat[6 * full:])


class SQLiteStore:
    """One SQLite file (WAL). The primary key is the whole event, so exact duplicates are ignored
    exactly, also across processes (``INSERT OR IGNORE``)."""

    def __init__(self, path: Path, retention: Retention):
        self.path = Path(path)
        self.where = str(self.path)
        self.retention = retention
        self._local = threading.local()
        self._create()

    @guarded
    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().execute(
            "CREATE TABLE IF NOT EXISTS events (customer_id TEXT NOT NULL, ts INTEGER NOT NULL, event_type TEXT NOT NULL, "
            "channel TEXT NOT NULL, value REAL NOT NULL, campaign TEXT NOT NULL, "
            "PRIMARY KEY (customer_id, ts, event_type, channel, value, campaign)) WITHOUT ROWID")
        found = [row[1] for row in self._conn().execute("PRAGMA table_info(events)")]
        if found != list(SQLITE_COLUMNS):
            raise ConfigError(f"profile store {self.path}: table 'events' has columns {found}, expected {list(SQLITE_COLUMNS)}.",
                              "point JOURNEY_PROFILE_STORE at a new file, or load the events again into an empty store.")
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # bounds: per customer, at least as many as it has stored (retention checks only those over)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bounds'").fetchone() is None:
            conn.execute("CREATE TABLE bounds (customer_id TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
            conn.execute("INSERT INTO bounds SELECT customer_id, COUNT(*) FROM events GROUP BY customer_id")  # a store from before
        conn.execute("COMMIT")

    @guarded
    def ping(self) -> None:
        self._conn().execute("SELECT 1 FROM events LIMIT 1").fetchall()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-131072")  # 128 MiB of pages: bulk loads stay in memory between commits
            self._local.conn = conn
        return conn

    @guarded
    def add(self, events: pd.DataFrame) -> tuple[int, int]:
        columns = event_columns(events, _NO_TEXT, _NO_VALUE)
        n = len(columns[0])
        if not n:
            return 0, 0
        flat: list = [None] * (6 * n)  # the rows' parameters one after the other, bound many rows per statement
        for k, col in enumerate(columns):
            flat[k::6] = col
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            _insert(conn, flat, n)
            stored = conn.total_changes - before
            self._retain(conn, Counter(columns[0]))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite has already rolled back after some errors (disk full, I/O)
                conn.execute("ROLLBACK")
            raise
        return stored, n - stored

    def _retain(self, conn: sqlite3.Connection, added: Counter) -> None:
        """Retention for the customers of one ``add`` (``added``: rows sent per customer). Each
        customer's bound grows by its rows sent (stored or not, so it never falls below the
        stored count); only customers whose bound passes ``max_events`` are counted and trimmed,
        and their bound becomes the exact count."""
        keep, age = self.retention.max_events, self.retention.max_age_days
        conn.executemany("INSERT INTO bounds VALUES (?, ?) ON CONFLICT (customer_id) DO UPDATE SET n = n + excluded.n", added.items())
        customers = list(added)
        for lo in range(0, len(customers), 500):
            part = customers[lo: lo + 500]
            marks = ",".join("?" * len(part))
            over = [r[0] for r in conn.execute(f"SELECT customer_id FROM bounds WHERE customer_id IN ({marks}) AND n > ?", (*part, keep))]
            for c in over:
                conn.execute("DELETE FROM events WHERE (customer_id, ts, event_type, channel, value, campaign) IN (SELECT * FROM events "
                             "WHERE customer_id = ? ORDER BY ts DESC, event_type DESC, channel DESC, value DESC, campaign DESC "
                             "LIMIT -1 OFFSET ?)", (c, keep))
                conn.execute("UPDATE bounds SET n = (SELECT COUNT(*) FROM events WHERE customer_id = ?) WHERE customer_id = ?", (c, c))
            if age is not None:
                conn.executemany("DELETE FROM events WHERE customer_id = ? AND ts < (SELECT MAX(ts) FROM events WHERE customer_id = ?) - ?",
                                 [(c, c, int(age * US_PER_DAY)) for c in part])

    def history(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        return _frame(self.history_rows(customer_ids))

    @guarded
    def history_rows(self, customer_ids: Iterable[str]) -> list[tuple]:
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        rows = []
        conn = self._conn()
        for lo in range(0, len(ids), 500):
            part = ids[lo: lo + 500]
            marks = ",".join("?" * len(part))
            for c, ts, et, ch, v, camp in conn.execute(f"SELECT * FROM events WHERE customer_id IN ({marks})", part):
                rows.append((c, ts, et, ch or None, None if v == _NO_VALUE else v, camp or None))
        return rows

    @guarded
    def delete(self, customer_id: str) -> int:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute("DELETE FROM events WHERE customer_id = ?", (customer_id,)).rowcount
            conn.execute("DELETE FROM bounds WHERE customer_id = ?", (customer_id,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite has already rolled back after some errors (disk full, I/O)
                conn.execute("ROLLBACK")
            raise
        return n

    @guarded
    def count(self, customer_id: str) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM events WHERE customer_id = ?", (customer_id,)).fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class RedisStore:
    """One sorted set per customer (``journey:events:<id>``), scored by event time; ``ZADD``
    ignores a member already there, so exact duplicates are stored once on every replica."""

    PREFIX = "journey:events:"

    def __init__(self, url: str, retention: Retention):
        import redis

        self.retention = retention
        self.where = redact(url)
        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)

    @guarded
    def ping(self) -> None:
        self.client.ping()

    def key(self, customer_id: str) -> str:
        return self.PREFIX + customer_id

    @guarded
    def add(self, events: pd.DataFrame) -> tuple[int, int]:
        rows = _rows(events)
        if not rows:
            return 0, 0
        by_customer: dict[str, dict[str, int]] = {}
        for r in rows:
            by_customer.setdefault(r[0], {})[_event_json(r)] = r[1]
        pipe = self.client.pipeline(transaction=False)
        for cid, members in by_customer.items():
            pipe.zadd(self.key(cid), members)
        stored = sum(int(n) for n in pipe.execute())
        self._retain(list(by_customer))
        return stored, len(rows) - stored

    def _retain(self, customers: list[str]) -> None:
        keep, age = self.retention.max_events, self.retention.max_age_days
        pipe = self.client.pipeline(transaction=False)
        for cid in customers:
            pipe.zremrangebyrank(self.key(cid), 0, -(keep + 1))
        pipe.execute()
        if age is not None:
            newest = self.client.pipeline(transaction=False)
            for cid in customers:
                newest.zrange(self.key(cid), -1, -1, withscores=True)
            for cid, top in zip(customers, newest.execute()):
                if top:
                    self.client.zremrangebyscore(self.key(cid), "-inf", f"({int(top[0][1]) - int(age * US_PER_DAY)}")

    def history(self, customer_ids: Iterable[str]) -> pd.DataFrame:
        return _frame(self.history_rows(customer_ids))

    @guarded
    def history_rows(self, customer_ids: Iterable[str]) -> list[tuple]:
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        pipe = self.client.pipeline(transaction=False)
        for cid in ids:
            pipe.zrange(self.key(cid), 0, -1)
        return [(cid, *json.loads(m)) for cid, members in zip(ids, pipe.execute()) for m in members]

    @guarded
    def delete(self, customer_id: str) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.zcard(self.key(customer_id))
        pipe.delete(self.key(customer_id))
        return int(pipe.execute()[0])

    @guarded
    def count(self, customer_id: str) -> int:
        return int(self.client.zcard(self.key(customer_id)))

    def close(self) -> None:
        self.client.close()


NO_STORE = "none"  # JOURNEY_PROFILE_STORE=none: no profiles (POST /predict then needs every customer's events)


def open_store(url: str | None, home: Path, retention: Retention) -> ProfileStore | None:
    """The store a URL names (None: the SQLite file under ``home``; ``none``: no store)."""
    if url is not None and url.strip().lower() == NO_STORE:
        return None
    if not url:
        return SQLiteStore(Path(home) / "profiles.db", retention)
    parts = urlsplit(url)
    if parts.scheme == "sqlite" and url.startswith("sqlite:///"):
        return SQLiteStore(Path(url[len("sqlite:///"):]), retention)  # sqlite:////abs/path or sqlite:///relative/path
    if parts.scheme in ("redis", "rediss", "unix"):
        return RedisStore(url, retention)
    raise ConfigError(f"JOURNEY_PROFILE_STORE={url!r}: unknown store.", "use sqlite:///PATH, redis://HOST:PORT/DB or none.")


def store_from_settings(runtime) -> ProfileStore | None:
    """The store the runtime settings name, with their retention (None when profiles are off; in a
    Bento, unless JOURNEY_PROFILE_STORE names one: a Bento touches nothing under JOURNEY_HOME)."""
    if runtime.bento_model and not runtime.profile_store:
        return None
    retention = Retention(max_events=runtime.profile_max_events or runtime.max_events, max_age_days=runtime.profile_max_age_days)
    return open_store(runtime.profile_store, runtime.home_path, retention)


def open_checked(runtime) -> ProfileStore | None:
    """:func:`store_from_settings`, checked to answer now (the service opens its store at start)."""
    store = store_from_settings(runtime)
    if store is not None:
        store.ping()
    return store

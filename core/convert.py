"""Real public datasets -> the canonical events frame (SPEC sections 2 and 7, ``journey convert``).

Each converter is a pure function ``src -> DataFrame`` that reads the original download (a file or
the folder that holds it), maps every source row to canonical events and returns them with the
columns of :data:`journey_stage.core.events.COLUMNS`, typed (ids as strings with their zero padding,
timestamps ``datetime64[us, UTC]``, ``value`` float64), sorted by customer, time and event type.
Rows are converted one to one: nothing is aggregated, deduplicated or dropped here, so exact
duplicates of the source (CDNOW and REES46 have a few) reach the events reader, which removes
them and reports the count. A missing file, a missing column or a value that cannot be read
raises :func:`journey_stage.core.errors.convert_source_invalid` naming the file (and the row).

:data:`CONVERTERS` maps the CLI dataset name to ``(function, taxonomy preset name)``; the presets
live in ``core/taxonomies/<preset>.toml`` and carry the settings each dataset needs.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from journey_stage.core import errors
from journey_stage.core.events import COLUMNS, TS_DTYPE, sort_events

CDNOW_FILE = "CDNOW_master.txt"
CDNOW_COLUMNS = ("customer_id", "date", "number_of_cds", "dollar_value")
OLIST_LEADS_FILE = "olist_marketing_qualified_leads_dataset.csv"
OLIST_DEALS_FILE = "olist_closed_deals_dataset.csv"
OLIST_LEAD_COLUMNS = ("mql_id", "first_contact_date", "landing_page_id", "origin")
OLIST_DEAL_COLUMNS = ("mql_id", "won_date", "declared_monthly_revenue")
REES46_FILE = "2019-Oct-head.csv"
REES46_COLUMNS = ("event_time", "event_type", "category_code", "price", "user_id")
REES46_EVENT_TYPES = {"view": "product_view", "cart": "add_to_cart", "purchase": "purchase"}

_SHOWN = 3  # bad values quoted in an error message


# ---- helpers ----------------------------------------------------------------------------------

def _locate(src: Path | str, filename: str, dataset: str, *, file_ok: bool = True) -> Path:
    """``src`` itself when it is a file (and ``file_ok``), else ``src/filename`` (or ``.gz``)."""
    src = Path(src)
    if not src.exists():
        raise errors.file_not_found(str(src))
    if src.is_file():
        if file_ok:
            return src
        raise errors.convert_source_invalid(dataset, str(src), f"a folder holding {filename}", "a file")
    for name in (filename, filename + ".gz"):
        if (src / name).is_file():
            return src / name
    present = sorted(p.name for p in src.iterdir())[:10]
    raise errors.convert_source_invalid(dataset, str(src / filename), "this file in the source folder", f"only {present}")


def _read_text_table(path: Path, dataset: str, columns: tuple[str, ...], **kwargs) -> pd.DataFrame:
    """Read every column as text (ids keep their zero padding; blanks become ''), check columns."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise errors.unreadable_file(str(path), "CSV", reason) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise errors.convert_source_invalid(
            dataset, str(path), f"columns {list(columns)}", f"columns {list(df.columns)} (missing {missing})"
        )
    for c in columns:
        df[c] = df[c].str.strip()
    return df


def _bad_rows(path: Path, dataset: str, column: str, expected: str, values: pd.Series, bad: np.ndarray) -> None:
    """Raise for the rows where ``bad`` is true (row numbers are 1-based data rows, header excluded)."""
    if not bad.any():
        return
    idx = np.flatnonzero(bad)
    shown = ", ".join(f"row {i + 1}: {values.iloc[i]!r}" for i in idx[:_SHOWN])
    more = f" and {len(idx) - _SHOWN} more row(s)" if len(idx) > _SHOWN else ""
    raise errors.convert_source_invalid(dataset, str(path), f"column '{column}' as {expected}", shown + more)


def _timestamps(path: Path, dataset: str, column: str, values: pd.Series, fmt: str, shown_fmt: str) -> pd.Series:
    """Parse naive text with ``fmt`` as UTC; every value must parse."""
    ts = pd.to_datetime(values, format=fmt, utc=True, errors="coerce")
    _bad_rows(path, dataset, column, f"a date {shown_fmt}", values, ts.isna().to_numpy())
    return ts.astype(TS_DTYPE)


def _amounts(path: Path, dataset: str, column: str, values: pd.Series, *, blank_ok: bool) -> pd.Series:
    """Text -> float64 >= 0 (blank -> NaN when ``blank_ok``)."""
    blank = (values == "").to_numpy()
    num = pd.to_numeric(values.mask(values == ""), errors="coerce").astype("float64")
    bad = (num.isna().to_numpy() & (~blank | (not blank_ok))) | (num < 0).fillna(False).to_numpy(dtype=bool)
    _bad_rows(path, dataset, column, "a number >= 0", values, bad)
    return num


def _column(values, n: int, dtype: str) -> pd.Series:
    """``values`` (Series, array or None = all null) as a column of length ``n`` with a fresh index."""
    if values is None:
        return pd.Series(np.nan if dtype == "float64" else pd.NA, index=pd.RangeIndex(n), dtype=dtype)
    if isinstance(values, pd.Series):
        values = values.reset_index(drop=True)
        return values.astype(dtype)
    return pd.Series(values, dtype=dtype)


def _frame(customer_id, timestamp, event_type, channel, value, campaign) -> pd.DataFrame:
    """The canonical frame: typed columns in :data:`COLUMNS` order, '' -> null, sorted."""
    n = len(customer_id)
    df = pd.DataFrame(
        {
            "customer_id": _column(customer_id, n, "str"),
            "timestamp": _column(timestamp, n, TS_DTYPE),
            "event_type": _column(event_type, n, "str"),
            "channel": _column(channel, n, "str"),
            "value": _column(value, n, "float64"),
            "campaign": _column(campaign, n, "str"),
        }
    )
    for c in ("channel", "campaign"):
        df[c] = df[c].mask(df[c] == "")
    return sort_events(df[list(COLUMNS)])


# ---- CDNOW ------------------------------------------------------------------------------------

def convert_cdnow(src: Path | str) -> pd.DataFrame:
    """CDNOW master file (``CDNOW_master.txt`` or the folder holding it) -> one ``purchase`` per row.

    Whitespace separated ``customer_id date number_of_cds dollar_value``; the header line is
    optional (the lifetimes copy has one, Fader & Hardie's original has none). ``customer_id``
    stays text (``00001``); ``date`` ``YYYYMMDD`` becomes midnight UTC; ``value`` is
    ``dollar_value`` (80 rows are $0 purchases and are kept as value 0).
    """
    path = _locate(src, CDNOW_FILE, "cdnow")
    first = ""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as fh:
            for line in fh:
                if line.strip():
                    first = line.strip()
                    break
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.unreadable_file(str(path), "text", str(exc).splitlines()[0][:200]) from None
    headerless = bool(first) and first.split()[0].isdigit()
    kwargs = {"header": None, "names": list(CDNOW_COLUMNS)} if headerless else {}
    df = _read_text_table(path, "cdnow", CDNOW_COLUMNS, sep=r"\s+", **kwargs)
    if df.empty:
        raise errors.no_events(str(path))
    ts = _timestamps(path, "cdnow", "date", df["date"], "%Y%m%d", "YYYYMMDD")
    value = _amounts(path, "cdnow", "dollar_value", df["dollar_value"], blank_ok=False)
    _bad_rows(path, "cdnow", "customer_id", "a non-empty id", df["customer_id"], (df["customer_id"] == "").to_numpy())
    return _frame(df["customer_id"], ts, np.full(len(df), "purchase", dtype=object), None, value, None)


# ---- Olist marketing funnel -------------------------------------------------------------------

def convert_olist_funnel(src: Path | str) -> pd.DataFrame:
    """Olist marketing funnel folder -> ``first_contact`` per lead and ``deal_won`` per closed deal.

    ``customer_id`` = ``mql_id``. A lead's event is at ``first_contact_date`` (``dd-mm-yyyy``,
    midnight UTC) with ``channel`` = ``origin`` (blank -> ``unknown``) and ``campaign`` =
    ``landing_page_id``. A deal's event is at ``won_date`` (``dd-mm-yyyy HH:MM``, UTC) with the
    lead's channel and landing page and ``value`` = ``declared_monthly_revenue`` when > 0, else
    NaN (797 of the 842 deals declare 0, i.e. nothing). A deal whose ``mql_id`` has no lead keeps
    a null channel and campaign (none in the published data).
    """
    src = Path(src)
    leads_path = _locate(src, OLIST_LEADS_FILE, "olist-funnel", file_ok=False)
    deals_path = _locate(src, OLIST_DEALS_FILE, "olist-funnel", file_ok=False)
    leads = _read_text_table(leads_path, "olist-funnel", OLIST_LEAD_COLUMNS)
    deals = _read_text_table(deals_path, "olist-funnel", OLIST_DEAL_COLUMNS)
    if leads.empty:
        raise errors.no_events(str(leads_path))
    for path, df in ((leads_path, leads), (deals_path, deals)):
        _bad_rows(path, "olist-funnel", "mql_id", "a non-empty id", df["mql_id"], (df["mql_id"] == "").to_numpy())
    _bad_rows(
        leads_path, "olist-funnel", "mql_id", "one row per lead (unique ids)", leads["mql_id"],
        leads["mql_id"].duplicated().to_numpy(),
    )

    lead_ts = _timestamps(leads_path, "olist-funnel", "first_contact_date", leads["first_contact_date"], "%d-%m-%Y", "dd-mm-yyyy")
    won_ts = _timestamps(deals_path, "olist-funnel", "won_date", deals["won_date"], "%d-%m-%Y %H:%M", "dd-mm-yyyy HH:MM")
    revenue = _amounts(deals_path, "olist-funnel", "declared_monthly_revenue", deals["declared_monthly_revenue"], blank_ok=True)
    revenue = revenue.where(revenue > 0)

    origin = leads["origin"].mask(leads["origin"] == "", "unknown")
    landing = leads["landing_page_id"].mask(leads["landing_page_id"] == "")
    by_lead = pd.DataFrame({"channel": origin.to_numpy(), "campaign": landing.to_numpy()}, index=leads["mql_id"].to_numpy())
    joined = by_lead.reindex(deals["mql_id"].to_numpy())

    n_l, n_d = len(leads), len(deals)
    return _frame(
        customer_id=np.concatenate([leads["mql_id"].to_numpy(dtype=object), deals["mql_id"].to_numpy(dtype=object)]),
        timestamp=pd.concat([lead_ts, won_ts], ignore_index=True),
        event_type=np.array(["first_contact"] * n_l + ["deal_won"] * n_d, dtype=object),
        channel=np.concatenate([origin.to_numpy(dtype=object), joined["channel"].to_numpy(dtype=object)]),
        value=np.concatenate([np.full(n_l, np.nan), revenue.to_numpy(dtype="float64")]),
        campaign=np.concatenate([landing.to_numpy(dtype=object), joined["campaign"].to_numpy(dtype=object)]),
    )


# ---- REES46 -----------------------------------------------------------------------------------

def convert_rees46(src: Path | str) -> pd.DataFrame:
    """REES46 e-commerce clickstream (``2019-Oct-head.csv``, any month's file, or the folder).

    ``view`` -> ``product_view``, ``cart`` -> ``add_to_cart``, ``purchase`` -> ``purchase``;
    ``customer_id`` = ``user_id`` as text; ``timestamp`` from ``YYYY-MM-DD HH:MM:SS UTC``;
    ``value`` = ``price`` on purchases only (NaN otherwise); ``campaign`` = ``category_code``
    (null when blank); ``channel`` null (the log has none). Other event types (e.g.
    ``remove_from_cart`` in the cosmetics shop files) are an error naming them.
    """
    path = _locate(src, REES46_FILE, "rees46")
    df = _read_text_table(path, "rees46", REES46_COLUMNS)
    if df.empty:
        raise errors.no_events(str(path))
    event_type = df["event_type"].map(REES46_EVENT_TYPES)
    _bad_rows(
        path, "rees46", "event_type", f"one of {sorted(REES46_EVENT_TYPES)}", df["event_type"], event_type.isna().to_numpy()
    )
    _bad_rows(path, "rees46", "user_id", "a non-empty id", df["user_id"], (df["user_id"] == "").to_numpy())
    text_ts = df["event_time"].str.removesuffix(" UTC")
    ts = pd.to_datetime(text_ts, format="%Y-%m-%d %H:%M:%S", utc=True, errors="coerce")
    _bad_rows(path, "rees46", "event_time", "a time YYYY-MM-DD HH:MM:SS UTC", df["event_time"], ts.isna().to_numpy())
    is_purchase = (event_type == "purchase").to_numpy()
    price = _amounts(path, "rees46", "price", df["price"], blank_ok=True)
    # a purchase needs its price; the price of a view or cart event is not money spent
    _bad_rows(path, "rees46", "price", "a price on every purchase", df["price"], is_purchase & price.isna().to_numpy())
    value = price.where(is_purchase)
    return _frame(
        customer_id=df["user_id"],
        timestamp=ts,
        event_type=event_type,
        channel=None,
        value=value,
        campaign=df["category_code"],
    )


ConvertFn = Callable[[Path], pd.DataFrame]

# CLI dataset name -> (converter, taxonomy preset name in core/taxonomies/)
CONVERTERS: dict[str, tuple[ConvertFn, str]] = {
    "cdnow": (convert_cdnow, "cdnow"),
    "olist-funnel": (convert_olist_funnel, "olist_funnel"),
    "rees46": (convert_rees46, "rees46"),
}

"""Converters of the real public datasets in data/real/ (figures from data/real/README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey_stage.core import errors
from journey_stage.core.convert import (
    CONVERTERS,
    convert_cdnow,
    convert_olist_funnel,
    convert_rees46,
)
from journey_stage.core.errors import JourneyError
from journey_stage.core.events import COLUMNS, canonical_events, sort_events
from journey_stage.core.settings import build_settings
from journey_stage.core.taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "data" / "real"
CDNOW = REAL / "cdnow"
OLIST = REAL / "olist_marketing_funnel"
REES46 = REAL / "rees46_2019oct_head"
UTC_US = "datetime64[us, UTC]"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return convert_cdnow(CDNOW)


@pytest.fixture(scope="module")
def olist() -> pd.DataFrame:
    return convert_olist_funnel(OLIST)


@pytest.fixture(scope="module")
def rees46() -> pd.DataFrame:
    return convert_rees46(REES46)


def assert_canonical(df: pd.DataFrame, preset: str) -> None:
    """Columns, dtypes, UTC, sort order, value >= 0, every event type known to the preset."""
    assert list(df.columns) == list(COLUMNS)
    assert str(df["timestamp"].dtype) == UTC_US
    assert str(df["timestamp"].dt.tz) == "UTC"
    for c in ("customer_id", "event_type", "channel", "campaign"):
        assert pd.api.types.is_string_dtype(df[c].dtype), c
        assert not pd.api.types.is_numeric_dtype(df[c].dtype), c
    assert df["value"].dtype == np.float64
    assert (df["value"].dropna() >= 0).all()
    assert df["customer_id"].notna().all() and df["timestamp"].notna().all() and df["event_type"].notna().all()
    pd.testing.assert_frame_equal(df, sort_events(df))
    taxonomy = load_taxonomy(preset)
    assert set(df["event_type"].unique()) <= set(taxonomy.event_role)


# ---- registry and presets -----------------------------------------------------------------------

def test_converters_registry_names_functions_and_presets():
    assert CONVERTERS == {
        "cdnow": (convert_cdnow, "cdnow"),
        "olist-funnel": (convert_olist_funnel, "olist_funnel"),
        "rees46": (convert_rees46, "rees46"),
    }
    for _, preset in CONVERTERS.values():
        taxonomy = load_taxonomy(preset)
        assert taxonomy.name == preset
        build_settings(taxonomy.settings, source=preset)  # preset settings are valid Settings


def test_presets_settings_and_roles():
    cd = load_taxonomy("cdnow")
    assert cd.event_role == {"purchase": "decision"} and cd.conversion_events == {"purchase"}
    s = build_settings(cd.settings)
    assert s.churn_activity == "conversions" and s.eligibility_days is None and s.horizons.churn == 91

    ol = load_taxonomy("olist_funnel")
    assert ol.event_role == {"first_contact": "consideration", "deal_won": "decision"}
    assert ol.conversion_events == {"deal_won"}
    s = build_settings(ol.settings)
    assert s.conversion_scope == "unconverted" and s.horizons.conversion == 90 and s.lookback_days == 90

    rs = load_taxonomy("rees46")
    assert rs.event_role == {"product_view": "consideration", "add_to_cart": "decision", "purchase": "decision"}
    assert rs.conversion_events == {"purchase"} and rs.settings == {}


# ---- CDNOW ----------------------------------------------------------------------------------------

def test_cdnow_counts_dates_and_ids(cdnow):
    assert_canonical(cdnow, "cdnow")
    assert len(cdnow) == 69_659
    assert cdnow["customer_id"].nunique() == 23_570
    assert cdnow["timestamp"].min() == pd.Timestamp("1997-01-01", tz="UTC")
    assert cdnow["timestamp"].max() == pd.Timestamp("1998-06-30", tz="UTC")
    assert (cdnow["timestamp"] == cdnow["timestamp"].dt.normalize()).all()  # midnight UTC
    # one cohort: every first purchase in Q1 1997
    assert cdnow.groupby("customer_id")["timestamp"].min().max() < pd.Timestamp("1997-04-01", tz="UTC")
    # zero padding kept
    assert (cdnow["customer_id"].str.len() == 5).all()
    assert cdnow["customer_id"].iloc[0] == "00001"
    assert set(cdnow["event_type"]) == {"purchase"}
    assert cdnow["channel"].isna().all() and cdnow["campaign"].isna().all()
    first = cdnow[cdnow["customer_id"] == "00002"]
    assert first["value"].tolist() == [12.0, 77.0]


def test_cdnow_zero_values_kept_and_duplicates_counted(cdnow):
    assert cdnow["value"].notna().all()
    assert (cdnow["value"] == 0).sum() == 80
    assert cdnow.duplicated().sum() == 255  # exact duplicates of the source rows, removed by the reader
    result = canonical_events(cdnow, "cdnow", load_taxonomy("cdnow"))
    assert result.n_problems == 0 and result.duplicates_removed == 255
    assert len(result.events) == 69_659 - 255


def test_cdnow_accepts_the_file_and_a_headerless_original(tmp_path):
    body = (CDNOW / "CDNOW_master.txt").read_text().splitlines()[1:201]
    headerless = tmp_path / "CDNOW_master.txt"
    headerless.write_text("\n".join(body) + "\n")
    out = convert_cdnow(headerless)
    assert len(out) == 200 and out["customer_id"].iloc[0] == "00001"
    assert len(convert_cdnow(CDNOW / "CDNOW_master.txt")) == 69_659


# ---- Olist ----------------------------------------------------------------------------------------

def test_olist_counts_and_join(olist):
    assert_canonical(olist, "olist_funnel")
    assert len(olist) == 8_842
    assert olist["customer_id"].nunique() == 8_000
    assert olist["event_type"].value_counts().to_dict() == {"first_contact": 8_000, "deal_won": 842}
    leads = olist[olist["event_type"] == "first_contact"].set_index("customer_id")
    deals = olist[olist["event_type"] == "deal_won"].set_index("customer_id")
    assert deals.index.isin(leads.index).all()  # every deal joins back to a lead
    # a deal carries its lead's channel and landing page
    assert (deals["channel"] == leads.loc[deals.index, "channel"]).all()
    assert (deals["campaign"] == leads.loc[deals.index, "campaign"]).all()
    # blank origins -> "unknown" (60 blank + 1,099 literal "unknown")
    assert olist["channel"].notna().all()
    assert (leads["channel"] == "unknown").sum() == 60 + 1_099
    assert olist["campaign"].notna().all()
    # value: declared monthly revenue when > 0 (45 deals), else NaN; leads carry no value
    assert leads["value"].isna().all()
    assert (deals["value"] > 0).sum() == 45 and deals["value"].isna().sum() == 797
    # dates: leads at midnight; one deal is won two days before its lead's first contact
    assert (leads["timestamp"] == leads["timestamp"].dt.normalize()).all()
    assert leads["timestamp"].min() == pd.Timestamp("2017-06-14", tz="UTC")
    assert leads["timestamp"].max() == pd.Timestamp("2018-05-31", tz="UTC")
    assert deals["timestamp"].max() == pd.Timestamp("2018-11-14 18:04", tz="UTC")
    early = deals.index[deals["timestamp"] < leads.loc[deals.index, "timestamp"]]
    assert early.tolist() == ["b91cf8812365f50ff4bda4bcd6206b05"]
    result = canonical_events(olist, "olist", load_taxonomy("olist_funnel"))
    assert result.n_problems == 0 and result.duplicates_removed == 0


def test_olist_deal_without_lead_keeps_null_channel(tmp_path):
    leads = pd.read_csv(OLIST / "olist_marketing_qualified_leads_dataset.csv", dtype=str).head(3)
    deals = pd.read_csv(OLIST / "olist_closed_deals_dataset.csv", dtype=str).head(2)
    leads.to_csv(tmp_path / "olist_marketing_qualified_leads_dataset.csv", index=False)
    deals.to_csv(tmp_path / "olist_closed_deals_dataset.csv", index=False)
    out = convert_olist_funnel(tmp_path)
    assert len(out) == 5
    orphan = out[(out["event_type"] == "deal_won") & ~out["customer_id"].isin(leads["mql_id"])]
    assert len(orphan) == 2 and orphan["channel"].isna().all() and orphan["campaign"].isna().all()


# ---- REES46 ---------------------------------------------------------------------------------------

def test_rees46_counts_types_and_values(rees46):
    assert_canonical(rees46, "rees46")
    assert len(rees46) == 17_434
    # data/real/README.md says 4,505 users; the file has 4,504 distinct user_id values
    assert rees46["customer_id"].nunique() == 4_504
    assert rees46["event_type"].value_counts().to_dict() == {"product_view": 17_055, "purchase": 214, "add_to_cart": 165}
    assert rees46["timestamp"].min() == pd.Timestamp("2019-10-01 00:00:00", tz="UTC")
    assert rees46["timestamp"].max() == pd.Timestamp("2019-10-01 02:50:00", tz="UTC")
    purchases = rees46["event_type"] == "purchase"
    assert rees46.loc[purchases, "value"].notna().all() and (rees46.loc[purchases, "value"] > 0).all()
    assert rees46.loc[~purchases, "value"].isna().all()
    assert rees46["channel"].isna().all()
    assert rees46["campaign"].isna().sum() == 5_746  # blank category_code -> null
    assert (rees46["customer_id"].str.len() == 9).all()


def test_rees46_duplicates(rees46):
    raw = pd.read_csv(REES46 / "2019-Oct-head.csv", dtype=str, keep_default_na=False)
    assert raw.duplicated().sum() == 5  # exact duplicate rows in the source (4 views, 1 cart)
    # 3 more collide once product and session are dropped; the reader removes all 8
    assert rees46.duplicated().sum() == 8
    result = canonical_events(rees46, "rees46", load_taxonomy("rees46"))
    assert result.n_problems == 0 and result.duplicates_removed == 8


# ---- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [convert_cdnow, convert_olist_funnel, convert_rees46])
def test_missing_source_names_the_path(fn, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(JourneyError) as exc:
        fn(missing)
    assert str(exc.value) == str(errors.file_not_found(str(missing)))


def test_folder_lacking_a_file_names_the_file(tmp_path):
    shutil.copy(OLIST / "olist_marketing_qualified_leads_dataset.csv", tmp_path)
    with pytest.raises(JourneyError) as exc:
        convert_olist_funnel(tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "olist_closed_deals_dataset.csv") in msg
    assert "cannot convert as olist-funnel" in msg and "journey convert olist-funnel SRC" in msg
    with pytest.raises(JourneyError, match="CDNOW_master.txt"):
        convert_cdnow(tmp_path)
    with pytest.raises(JourneyError, match="a folder holding"):
        convert_olist_funnel(tmp_path / "olist_marketing_qualified_leads_dataset.csv")


def test_missing_columns_name_file_and_columns(tmp_path):
    bad = tmp_path / "2019-Oct-head.csv"
    pd.read_csv(REES46 / "2019-Oct-head.csv", dtype=str, nrows=5).drop(columns=["price"]).to_csv(bad, index=False)
    with pytest.raises(JourneyError) as exc:
        convert_rees46(tmp_path)
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: cannot convert as rees46") and "missing ['price']" in msg

    cd = tmp_path / "cd.txt"
    cd.write_text("customer_id date number_of_cds\n00001 19970101 1\n")
    with pytest.raises(JourneyError, match=r"missing \['dollar_value'\]"):
        convert_cdnow(cd)


def test_bad_values_name_file_column_and_row(tmp_path):
    cd = tmp_path / "cd.txt"
    cd.write_text("customer_id date number_of_cds dollar_value\n00001 19970101 1 1.5\n00002 1997-01-02 1 2\n00003 19970103 1 -4\n")
    with pytest.raises(JourneyError) as exc:
        convert_cdnow(cd)
    assert "column 'date' as a date YYYYMMDD" in str(exc.value) and "row 2: '1997-01-02'" in str(exc.value)
    cd.write_text("customer_id date number_of_cds dollar_value\n00001 19970101 1 1.5\n00003 19970103 1 -4\n")
    with pytest.raises(JourneyError, match=r"column 'dollar_value' as a number >= 0.*row 2: '-4'"):
        convert_cdnow(cd)

    raw = pd.read_csv(REES46 / "2019-Oct-head.csv", dtype=str, nrows=4)
    raw.loc[2, "event_type"] = "remove_from_cart"
    raw.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(JourneyError, match=r"column 'event_type' as one of \['cart', 'purchase', 'view'\].*row 3: 'remove_from_cart'"):
        convert_rees46(tmp_path / "r.csv")

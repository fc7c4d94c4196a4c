"""The HTTP service's encoding straight from canonical rows (:func:`journey_stage.features.encode.encode_rows`)
equals the general encoding of the same rows as a canonical frame."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from journey_stage.core.events import canonical_rows, tuples_frame
from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.features.build import build_features
from journey_stage.features.encode import EncodedEvents, encode, encode_rows

TAX = load_taxonomy("five_stage")
FIELDS = ("customer_ids", "cust", "ts", "role", "etype", "channel", "value", "conv")

records = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c10", "Kunde-ä"]),
        st.builds(lambda d, h, s: f"2025-03-{d:02d}T{h:02d}:00:{s:02d}Z", st.integers(1, 28), st.integers(0, 23), st.integers(0, 2)),
        st.sampled_from(list(TAX.event_role)),
        st.one_of(st.none(), st.sampled_from(["instagram", "Email", "store", "other-thing", "none"])),
        st.one_of(st.none(), st.sampled_from([0.0, 1.5, 1e12]), st.floats(0, 1e6, allow_nan=False)),
        st.one_of(st.none(), st.sampled_from(["spring", "x"])),
    ),
    max_size=40,
)


def assert_same(a: EncodedEvents, b: EncodedEvents) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype, f
        np.testing.assert_array_equal(x, y, err_msg=f)
    assert a.event_types == b.event_types and a.source_index is None and b.source_index is None


@settings(max_examples=300, deadline=None)
@given(records)
def test_encode_rows_equals_encode_of_the_frame(recs):
    rows = canonical_rows(recs, TAX)
    assert rows is not None
    fast, general = encode_rows(rows, TAX), encode(tuples_frame(rows), TAX)
    assert_same(fast, general)
    if rows:  # and so do the features built from them
        t = max(r[1] for r in rows)
        a, b = build_features(fast, t, Settings()), build_features(general, t, Settings())
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.customer_ids, b.customer_ids)


def test_encode_rows_of_nothing_is_empty():
    e = encode_rows([], TAX)
    assert e.n_events == 0 and e.n_customers == 0
    assert_same(e, encode(tuples_frame([]), TAX))

"""Taxonomies (SPEC section 3): presets, custom TOML files, every taxonomy error, unknown event types."""

from __future__ import annotations

import re

import pytest

from journey_stage.core.errors import ConfigError, JourneyError
from journey_stage.core.settings import build_settings
from journey_stage.core.taxonomy import LAPSED, ROLES, Taxonomy, load_taxonomy, preset_names, taxonomy_from_dict

FIVE_STAGE_EVENTS = {
    "awareness": ["ad_impression", "ad_click", "social_view", "social_follow", "influencer_view", "hashtag_view",
                  "organic_post_view"],
    "consideration": ["page_view", "product_view", "review_read", "compare", "newsletter_signup", "webinar", "faq_view"],
    "decision": ["add_to_cart", "begin_checkout", "pricing_view", "coupon_view", "support_presale", "purchase"],
    "retention": ["support_contact", "repeat_visit", "loyalty_join", "email_open", "email_click", "onboarding"],
    "advocacy": ["review_written", "referral", "share", "ugc_post", "testimonial"],
}
ALL_EVENTS = {e: role for role, evs in FIVE_STAGE_EVENTS.items() for e in evs}
ADVOCACY = sorted(FIVE_STAGE_EVENTS["advocacy"])
DATASET_PRESETS = ["cdnow", "olist_funnel", "rees46"]


# ---- presets -------------------------------------------------------------------------------------

def test_preset_names():
    names = preset_names()
    assert {"five_stage", "see_think_do_care", "aida"} <= set(names)
    assert names == sorted(names)


def test_default_is_five_stage():
    assert load_taxonomy() == load_taxonomy("five_stage")


def test_five_stage_preset_matches_spec():
    t = load_taxonomy("five_stage")
    assert isinstance(t, Taxonomy)
    assert t.name == "five_stage"
    assert t.stages == ["awareness", "consideration", "decision", "retention", "advocacy", "lapsed"]
    assert t.role_stage == {r: r for r in ROLES}
    assert t.event_role == ALL_EVENTS
    assert len(t.event_types) == 31 and t.event_types == sorted(ALL_EVENTS)
    assert t.conversion_events == frozenset({"purchase"})
    assert t.advocacy_events == ADVOCACY
    assert t.settings == {}
    assert t.description


@pytest.mark.parametrize(
    "name, stages, role_stage",
    [
        ("see_think_do_care", ["see", "think", "do", "care", LAPSED],
         {"awareness": "see", "consideration": "think", "decision": "do", "retention": "care", "advocacy": "care"}),
        ("aida", ["attention", "interest", "desire", "action", LAPSED],
         {"awareness": "attention", "consideration": "interest", "decision": "desire", "retention": "action",
          "advocacy": "action"}),
    ],
)
def test_four_phase_presets_map_the_same_31_events(name, stages, role_stage):
    t = load_taxonomy(name)
    assert t.name == name
    assert t.stages == stages
    assert t.role_stage == role_stage
    assert t.event_role == ALL_EVENTS  # the same events, with the same roles, as five_stage
    assert len(t.event_types) == 31
    assert t.conversion_events == frozenset({"purchase"})
    assert t.advocacy_events == ADVOCACY  # advocacy events keep the advocacy role inside "care"/"action"
    # a stage name shared by two roles resolves to the first (lower) role
    assert t.role_of_stage(stages[3]) == "retention"
    assert t.stage_of_role_index(4) == stages[3]
    assert t.stage_of_role_index(5) == LAPSED


def test_see_think_do_care_and_aida_have_identical_event_sets():
    a, b = load_taxonomy("see_think_do_care"), load_taxonomy("aida")
    assert a.event_types == b.event_types == load_taxonomy("five_stage").event_types
    assert a.event_role == b.event_role


@pytest.mark.parametrize("name", DATASET_PRESETS)
def test_dataset_presets_load_and_give_valid_settings(name):
    if name not in preset_names():
        pytest.skip(f"preset {name} not shipped")
    t = load_taxonomy(name)
    assert t.name == name
    assert t.stages[-1] == LAPSED
    assert t.conversion_events <= set(t.event_role)
    build_settings(t.settings, source=f"preset '{name}'")  # its [settings] table is valid


def test_cdnow_preset():
    t = load_taxonomy("cdnow")
    assert t.event_role == {"purchase": "decision"}
    assert t.conversion_events == frozenset({"purchase"})
    assert t.advocacy_events == []
    # roles the taxonomy does not name keep their canonical names
    assert t.stages == ["awareness", "consideration", "decision", "retention", "advocacy", LAPSED]
    s = build_settings(t.settings)
    assert s.churn_activity == "conversions"
    assert s.eligibility_days is None
    assert s.horizons.churn == 91
    assert (s.horizons.stage, s.horizons.advocacy, s.horizons.conversion) == (14, 30, 14)


def test_olist_funnel_preset():
    t = load_taxonomy("olist_funnel")
    assert t.event_role == {"first_contact": "consideration", "deal_won": "decision"}
    assert t.conversion_events == frozenset({"deal_won"})
    s = build_settings(t.settings)
    assert s.conversion_scope == "unconverted"
    assert s.lookback_days == 90
    assert s.horizons.conversion == 90 and s.horizons.churn == 90


def test_rees46_preset():
    t = load_taxonomy("rees46")
    assert t.event_role == {"product_view": "consideration", "add_to_cart": "decision", "purchase": "decision"}
    assert t.conversion_events == frozenset({"purchase"})
    assert t.settings == {}


@pytest.mark.parametrize("name", ["five_stage", "see_think_do_care", "aida", "cdnow", "olist_funnel", "rees46"])
def test_to_dict_round_trips(name):
    if name not in preset_names():
        pytest.skip(f"preset {name} not shipped")
    t = load_taxonomy(name)
    d = t.to_dict()
    assert d["name"] == name
    assert [s["role"] for s in d["stages"]] == list(ROLES)
    assert taxonomy_from_dict(d, "round-trip") == t


def test_load_by_path_to_a_preset_file():
    from importlib import resources

    path = resources.files("journey_stage.core.taxonomies").joinpath("aida.toml")
    assert load_taxonomy(str(path)) == load_taxonomy("aida")


# ---- custom TOML ---------------------------------------------------------------------------------

CUSTOM = """
name = "shop"
description = "A custom shop funnel."
conversion_events = ["order", "subscription"]

[[stages]]
name = "discover"
role = "awareness"
events = ["tiktok_view", "ad_click"]

[[stages]]
name = "evaluate"
role = "consideration"
events = ["product_view"]

[[stages]]
name = "buy"
role = "decision"
events = ["order", "subscription", "cart"]

[[stages]]
name = "stay"
role = "retention"
events = ["login"]

[[stages]]
name = "champion"
role = "advocacy"
events = ["review", "referral"]

[settings]
lookback_days = 45
eligibility_days = "none"

[settings.horizons]
churn = 60
"""


def test_custom_toml_file(tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text(CUSTOM)
    t = load_taxonomy(path)
    assert t.name == "shop"
    assert t.description == "A custom shop funnel."
    assert t.stages == ["discover", "evaluate", "buy", "stay", "champion", LAPSED]
    assert t.role_stage == {"awareness": "discover", "consideration": "evaluate", "decision": "buy",
                            "retention": "stay", "advocacy": "champion"}
    assert t.event_role["cart"] == "decision" and t.event_role["login"] == "retention"
    assert t.conversion_events == frozenset({"order", "subscription"})
    assert t.advocacy_events == ["referral", "review"]
    assert t.role_of_stage("champion") == "advocacy"
    assert t.settings == {"lookback_days": 45, "eligibility_days": "none", "horizons": {"churn": 60}}
    s = build_settings(t.settings)
    assert (s.lookback_days, s.eligibility_days, s.horizons.churn, s.horizons.stage) == (45, None, 60, 14)
    assert load_taxonomy(str(path)) == t  # str path works too


def test_custom_toml_defaults(tmp_path):
    """No name (file stem), no roles (stage names are roles), no conversion_events (purchase), a subset of stages."""
    path = tmp_path / "mini.toml"
    path.write_text('[[stages]]\nname = "awareness"\nevents = ["ad"]\n\n'
                    '[[stages]]\nname = "decision"\nevents = ["purchase"]\n')
    t = load_taxonomy(path)
    assert t.name == "mini"
    assert t.event_role == {"ad": "awareness", "purchase": "decision"}
    assert t.conversion_events == frozenset({"purchase"})
    assert t.stages == ["awareness", "consideration", "decision", "retention", "advocacy", LAPSED]
    assert t.settings == {}


def test_two_roles_may_share_one_stage_name(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[stages]]\nname = "before"\nrole = "awareness"\nevents = ["ad"]\n'
                    '[[stages]]\nname = "before"\nrole = "decision"\nevents = ["purchase"]\n')
    t = load_taxonomy(path)
    assert t.stages[:2] == ["before", "consideration"]
    assert t.role_of_stage("before") == "awareness"


# ---- errors --------------------------------------------------------------------------------------

def _write(tmp_path, text: str, name: str = "tax.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_error_taxonomy_file_not_found(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: taxonomy file not found.")) as exc:
        load_taxonomy(path)
    assert "five_stage" in exc.value.hint  # lists the presets
    assert isinstance(exc.value, JourneyError)


def test_error_invalid_toml(tmp_path):
    path = _write(tmp_path, '[[stages]\nname = "awareness"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid TOML: ")) as exc:
        load_taxonomy(path)
    assert exc.value.hint == "fix the TOML syntax."


@pytest.mark.parametrize("text", ['name = "x"\n', 'stages = []\n', 'stages = "awareness"\n'])
def test_error_missing_stages(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: expected a non-empty [[stages]] array of tables.")) as exc:
        load_taxonomy(path)
    assert "five_stage.toml" in exc.value.hint


def test_error_stage_without_name(tmp_path):
    path = _write(tmp_path, '[[stages]]\nrole = "awareness"\nevents = ["ad"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: stages[0]: expected a table with 'name', 'events'")):
        load_taxonomy(path)


def test_error_bad_role(tmp_path):
    path = _write(tmp_path, '[[stages]]\nname = "awareness"\nevents = ["ad"]\n'
                            '[[stages]]\nname = "look"\nevents = ["x"]\n')
    msg = f"{path}: stages[1] ('look'): role 'look' is not one of ['awareness', 'consideration', 'decision', 'retention', 'advocacy']"
    with pytest.raises(ConfigError, match=re.escape(msg)):
        load_taxonomy(path)


def test_error_role_given_twice(tmp_path):
    path = _write(tmp_path, '[[stages]]\nname = "buy"\nrole = "decision"\nevents = ["purchase"]\n'
                            '[[stages]]\nname = "pay"\nrole = "decision"\nevents = ["checkout"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: stages[1] ('pay'): role 'decision' is given twice.")):
        load_taxonomy(path)


def test_error_event_mapped_twice(tmp_path):
    path = _write(tmp_path, '[[stages]]\nname = "consideration"\nevents = ["purchase", "view"]\n'
                            '[[stages]]\nname = "decision"\nevents = ["purchase"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: stages[1] ('decision'): event type 'purchase' is mapped twice.")):
        load_taxonomy(path)


def test_error_conversion_event_not_mapped(tmp_path):
    path = _write(tmp_path, 'conversion_events = ["order", "purchase"]\n'
                            '[[stages]]\nname = "decision"\nevents = ["purchase"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: conversion_events ['order'] are not mapped to any stage.")):
        load_taxonomy(path)


def test_error_default_conversion_event_not_mapped(tmp_path):
    path = _write(tmp_path, '[[stages]]\nname = "decision"\nevents = ["order"]\n')
    with pytest.raises(ConfigError, match=re.escape("conversion_events ['purchase'] are not mapped to any stage.")):
        load_taxonomy(path)


def test_error_settings_not_a_table(tmp_path):
    path = _write(tmp_path, 'settings = 3\n[[stages]]\nname = "decision"\nevents = ["purchase"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: [settings] must be a table.")):
        load_taxonomy(path)


def test_error_stages_out_of_funnel_order(tmp_path):
    path = _write(tmp_path, '[[stages]]\nname = "decision"\nevents = ["purchase"]\n'
                            '[[stages]]\nname = "awareness"\nevents = ["ad"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: stages must be listed in funnel order")):
        load_taxonomy(path)


def test_error_unknown_preset_name():
    with pytest.raises(ConfigError, match=re.escape("taxonomy 'six_stage' is not a preset or a file.")) as exc:
        load_taxonomy("six_stage")
    for name in ("five_stage", "see_think_do_care", "aida"):
        assert name in exc.value.hint
    assert "TOML" in str(exc.value)


# ---- unknown event types -------------------------------------------------------------------------

def test_with_unknown_maps_unknown_types_to_a_stage():
    t = load_taxonomy("five_stage")
    t2 = t.with_unknown(["tiktok_like", "story_view"], "awareness")
    assert t2.event_role["tiktok_like"] == "awareness" and t2.event_role["story_view"] == "awareness"
    assert len(t2.event_role) == 33
    assert "tiktok_like" not in t.event_role  # the original is untouched
    assert (t2.name, t2.role_stage, t2.conversion_events, t2.settings) == (t.name, t.role_stage, t.conversion_events, t.settings)


def test_with_unknown_uses_the_taxonomy_stage_names():
    t = load_taxonomy("see_think_do_care")
    assert t.with_unknown(["x"], "think").event_role["x"] == "consideration"
    assert t.with_unknown(["y"], "care").event_role["y"] == "retention"


@pytest.mark.parametrize("stage", ["lapsed", "nonsense", "awareness"])
def test_with_unknown_rejects_an_unknown_stage_name(stage):
    t = load_taxonomy("aida")  # "awareness" is a role, not an aida stage name
    with pytest.raises(ConfigError, match=re.escape(f"stage {stage!r} is not in taxonomy 'aida'.")) as exc:
        t.with_unknown(["x"], stage)
    assert "attention" in exc.value.hint and "lapsed" not in exc.value.hint

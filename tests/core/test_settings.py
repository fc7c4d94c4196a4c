"""Settings (SPEC section 4 defaults): layering, validation, horizon flags and config files."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from pydantic import ValidationError

from journey_stage.core.errors import ConfigError, JourneyError
from journey_stage.core.settings import Horizons, Settings, build_settings, parse_horizon_flags, read_config_file
from journey_stage.core.taxonomy import load_taxonomy


def test_defaults_equal_spec_section_4():
    s = Settings()
    assert s.lookback_days == 30  # W
    assert s.advocacy_lookback_days == 90  # A
    assert s.horizons.stage == 14  # H_stage
    assert s.horizons.churn == 90  # H_churn
    assert s.horizons.advocacy == 30  # H_adv
    assert s.horizons.conversion == 14  # H_conv
    assert s.eligibility_days == 90  # E
    assert s.step_days == 7
    assert s.taxonomy == "five_stage"
    assert s.unknown_stage is None
    assert s.churn_activity == "any"
    assert s.test_from is None
    assert s.model_name == "journey-stage"
    assert build_settings() == s
    assert build_settings(None, {}) == s


def test_later_layers_win_and_nested_horizons_merge():
    preset = {"lookback_days": 20, "horizons": {"churn": 91, "stage": 10}}
    config = {"lookback_days": 25, "step_days": 14, "horizons": {"stage": 7}}
    flags = {"horizons": {"conversion": 21.5}, "seed": 3}
    s = build_settings(preset, config, flags)
    assert s.lookback_days == 25
    assert s.step_days == 14
    assert s.seed == 3
    assert s.horizons == Horizons(stage=7, churn=91, advocacy=30, conversion=21.5)
    assert preset == {"lookback_days": 20, "horizons": {"churn": 91, "stage": 10}}  # inputs not mutated


def test_none_in_a_later_layer_does_not_erase_a_value():
    s = build_settings({"lookback_days": 45, "taxonomy": "aida"}, {"lookback_days": None, "taxonomy": None})
    assert s.lookback_days == 45 and s.taxonomy == "aida"


@pytest.mark.parametrize("key", ["eligibility_days", "unknown_stage", "warmup_days"])
def test_explicit_none_clears_nullable_settings(key):
    first = {"eligibility_days": 30, "unknown_stage": "awareness", "warmup_days": 60}
    assert getattr(build_settings(first, {key: None}), key) is None


@pytest.mark.parametrize("word", ["none", "None", " NONE "])
def test_eligibility_none_word(word):
    assert build_settings({"eligibility_days": word}).eligibility_days is None
    assert Settings(eligibility_days=word).eligibility_days is None


def test_preset_then_config_then_flags():
    preset = load_taxonomy("cdnow").settings
    s = build_settings(preset, {"eligibility_days": 60}, {"horizons": parse_horizon_flags(["stage=7"])})
    assert s.eligibility_days == 60
    assert s.churn_activity == "conversions"
    assert s.horizons.churn == 91 and s.horizons.stage == 7


def test_test_from_is_parsed():
    s = build_settings({"test_from": "2025-06-01"})
    assert s.test_from == datetime(2025, 6, 1)


def test_with_overrides_and_loggable():
    s = build_settings({"horizons": {"churn": 60}})
    s2 = s.with_overrides({"horizons": {"stage": 7}, "lookback_days": 10})
    assert (s2.horizons.churn, s2.horizons.stage, s2.lookback_days) == (60, 7, 10)
    assert s.horizons.stage == 14  # unchanged
    flat = s2.loggable()
    assert flat["horizons.churn"] == 60 and flat["horizons.stage"] == 7 and flat["lookback_days"] == 10
    assert "horizons" not in flat
    assert all(not isinstance(v, dict) for v in flat.values())


@pytest.mark.parametrize(
    "layer, name",
    [
        ({"lookback_days": -1}, "lookback_days"),
        ({"lookback_days": "thirty"}, "lookback_days"),
        ({"step_days": 0}, "step_days"),
        ({"horizons": {"churn": 0}}, "horizons.churn"),
        ({"horizons": {"stage": "soon"}}, "horizons.stage"),
        ({"horizons": {"weeks": 3}}, "horizons.weeks"),
        ({"churn_activity": "sometimes"}, "churn_activity"),
        ({"eligibility_days": "never"}, "eligibility_days"),
        ({"lookbak_days": 30}, "lookbak_days"),
        ({"last_k": 100}, "last_k"),
        ({"booster_weights": [1.0, 0.0]}, "booster_weights"),
        ({"booster_weights": []}, "booster_weights"),
        ({"calibration": "beta"}, "calibration"),
    ],
)
def test_bad_value_names_the_setting(layer, name):
    with pytest.raises(ConfigError, match=re.escape(f"cfg.toml: setting '{name}': ")) as exc:
        build_settings(layer, source="cfg.toml")
    assert isinstance(exc.value, JourneyError)
    assert "README" in exc.value.hint


def test_bad_value_message_shows_what_was_given():
    with pytest.raises(ConfigError, match=re.escape("settings: setting 'lookback_days': ")) as exc:
        build_settings({"lookback_days": -3})
    assert "(got -3)" in exc.value.message


def test_assignment_is_validated():
    s = Settings()
    with pytest.raises(ValidationError, match="lookback_days"):
        s.lookback_days = -1
    assert s.lookback_days == 30


def test_parse_horizon_flags_good():
    assert parse_horizon_flags(["churn=91", "stage=7", " conversion = 21.5"]) == {"churn": 91.0, "stage": 7.0,
                                                                                  "conversion": 21.5}
    assert parse_horizon_flags([]) == {}
    assert parse_horizon_flags(None) == {}
    assert parse_horizon_flags(["churn=30", "churn=60"]) == {"churn": 60.0}


@pytest.mark.parametrize("flag", ["churn", "weeks=3", "=5", "churn:90"])
def test_parse_horizon_flags_bad_task(flag):
    with pytest.raises(ConfigError, match=re.escape(f"--horizon {flag!r}: expected TASK=DAYS with TASK one of "
                                                    "['stage', 'churn', 'advocacy', 'conversion'].")) as exc:
        parse_horizon_flags([flag])
    assert "churn=91" in exc.value.hint


@pytest.mark.parametrize("flag, days", [("churn=abc", "abc"), ("stage=", ""), ("advocacy=7d", "7d")])
def test_parse_horizon_flags_bad_days(flag, days):
    with pytest.raises(ConfigError, match=re.escape(f"--horizon {flag!r}: DAYS must be a number, got {days!r}.")):
        parse_horizon_flags([flag])


def test_negative_horizon_flag_is_rejected_by_build_settings():
    with pytest.raises(ConfigError, match=re.escape("setting 'horizons.churn'")):
        build_settings({"horizons": parse_horizon_flags(["churn=-5"])})


def test_read_config_file(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('lookback_days = 21\neligibility_days = "none"\n[horizons]\nchurn = 120\n')
    data = read_config_file(path)
    assert data == {"lookback_days": 21, "eligibility_days": "none", "horizons": {"churn": 120}}
    s = build_settings(data, source=str(path))
    assert (s.lookback_days, s.eligibility_days, s.horizons.churn, s.horizons.stage) == (21, None, 120, 14)


def test_read_config_file_missing(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: config file not found.")) as exc:
        read_config_file(path)
    assert "--config" in exc.value.hint


def test_read_config_file_bad_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("lookback_days = = 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid TOML: ")) as exc:
        read_config_file(path)
    assert exc.value.hint == "fix the TOML syntax."


def test_booster_weight_error_says_what_is_allowed():
    with pytest.raises(ConfigError, match=re.escape("setting 'booster_weights': ")) as exc:
        build_settings({"booster_weights": [0.5, 1.5]})
    assert "(0, 1]" in exc.value.message and "1.5" in exc.value.message

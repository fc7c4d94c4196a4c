"""Runtime settings: secrets never shown (redact)."""

from __future__ import annotations

import pytest

from journey_stage.core.runtime import redact


@pytest.mark.parametrize("url, shown", [
    ("http://user:pw@mlflow:5000", "http://user:***@mlflow:5000"),
    ("redis://127.0.0.1:6379/0?password=s3cret", "redis://127.0.0.1:6379/0?password=***"),
    ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
    ("https://h/x?Token=abc#frag", "https://h/x?Token=***#frag"),
    ("redis://127.0.0.1:6379/0?db=2", "redis://127.0.0.1:6379/0?db=2"),
])
def test_redact_hides_passwords_in_user_info_and_query(url, shown):
    assert redact(f"cannot reach {url} (refused)") == f"cannot reach {shown} (refused)"

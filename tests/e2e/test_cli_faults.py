"""Faults at the command line (issue 13, defects 8 and 10): each one is one line plus a hint and a
non-zero exit, in seconds, never a traceback, and never a secret. The real `journey` command runs
in a subprocess with its own environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from journey_stage.synthetic.generate import generate_events

SECRET = "s3cr3t-pa55"


def journey(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "MLFLOW_"))}
    base |= {"JOURNEY_HOME": str(cwd / "home"), "BENTOML_DO_NOT_TRACK": "true"} | (env or {})
    return subprocess.run([sys.executable, "-m", "journey_stage.cli", *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "Traceback" not in text and "File \"" not in text, text[-3000:]
    assert "error:" in text
    assert len([line for line in text.splitlines() if line.strip()]) <= 6, text
    for needle in needles:
        assert needle in text, text
    return text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-faults") / "events.parquet"
    generate_events(300, seed=4).to_parquet(path)
    return path


def test_tracking_server_down_is_one_line_fast_and_hides_the_password(tmp_path):
    uri = f"http://user:{SECRET}@127.0.0.1:{closed_port()}"
    t0 = time.time()
    proc = journey(["promote"], tmp_path, {"MLFLOW_TRACKING_URI": uri}, timeout=120)
    text = one_line_error(proc, "not reachable")
    assert time.time() - t0 < 60
    assert SECRET not in text and "user:***@" in text


def test_serve_with_the_tracking_server_down_does_not_hang(tmp_path):
    uri = f"http://user:{SECRET}@127.0.0.1:{closed_port()}"
    proc = journey(["serve", "--port", "1"], tmp_path, {"MLFLOW_TRACKING_URI": uri}, timeout=120)
    assert SECRET not in one_line_error(proc, "not reachable")


def test_test_from_after_the_data_is_one_line(tmp_path, events_file):
    proc = journey(["train", "--events", str(events_file), "--test-from", "2099-01-01"], tmp_path, timeout=300)
    one_line_error(proc, "--test-from", "2099-01-01")


def test_report_pointing_at_a_file_fails_before_training(tmp_path, events_file):
    report = tmp_path / "report.html"
    report.write_text("mine")
    t0 = time.time()
    proc = journey(["train", "--events", str(events_file), "--report", str(report)], tmp_path, timeout=300)
    one_line_error(proc, "--report")
    assert time.time() - t0 < 30 and report.read_text() == "mine"


@pytest.mark.parametrize("command", [["score", "--events", "EVENTS", "--out", "o.parquet"], ["promote"], ["serve", "--port", "1"]])
def test_a_mistyped_journey_home_is_one_line_and_creates_nothing(tmp_path, events_file, command):
    home = tmp_path / "no-such-home"
    args = [str(events_file) if a == "EVENTS" else a for a in command]
    proc = journey(args, tmp_path, {"JOURNEY_HOME": str(home)})
    one_line_error(proc, "JOURNEY_HOME")
    assert not home.exists()


def test_a_bad_runtime_variable_is_one_line(tmp_path):
    proc = journey(["promote"], tmp_path, {"JOURNEY_MAX_EVENTS": "lots"})
    one_line_error(proc, "JOURNEY_MAX_EVENTS")


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path):
    bad = tmp_path / "taxonomy.toml"
    bad.write_bytes(b"\xff\xfe not toml")
    proc = journey(["validate", "--events", str(tmp_path / "x.csv"), "--taxonomy", str(bad)], tmp_path)
    one_line_error(proc)


def test_train_over_the_customer_cap_reads_and_reports_a_sample(tmp_path):
    """`journey train` on a Parquet log with more customers than eval_customers_cap reads only the
    sampled customers' events and says so, on the console and in report.json."""
    import json

    import pandas as pd

    events_file = tmp_path / "events.parquet"
    generate_events(1300, seed=5).to_parquet(events_file, index=False)
    config = tmp_path / "settings.toml"
    config.write_text("eval_customers_cap = 1000\nn_estimators = 20\nbootstrap_rounds = 0\npurge_validation = false\n")
    proc = journey(["train", "--events", str(events_file), "--config", str(config), "--report", str(tmp_path / "report")], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "trained and evaluated on 1,000 of 1,300 customers" in said, said[-2000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    sample = report["sample"]
    assert sample["applied"] is True and sample["customers"] == 1000 and sample["customers_total"] == 1300
    n_all = len(pd.read_parquet(events_file))
    assert 0 < sample["events"] < n_all and sample["events_total"] == n_all

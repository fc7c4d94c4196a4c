"""`journey check` (issue 14): data sufficiency per task before training, from the command line:
protocol, history, eligible customers per cutoff, rows and positives, a verdict with its reason,
and an exit status that says whether any task can train."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from journey_stage.cli import app

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
runner = CliRunner()


def convert(dataset: str, src: Path, out: Path) -> Path:
    if not src.exists():
        pytest.skip("real data not present")
    res = runner.invoke(app, ["convert", dataset, str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_three_hours_of_clickstream_cannot_train(tmp_path):
    events = convert("rees46", REAL / "rees46_2019oct_head", tmp_path / "rees.parquet")
    res = runner.invoke(app, ["check", "--events", str(events)])
    assert res.exit_code == 1, res.output
    for task, h in (("stage", 14), ("churn", 90), ("advocacy", 30), ("conversion", 14)):
        assert re.search(rf"^{task} \({h}-day horizon\): INSUFFICIENT: needs \d+ more days of events", res.output, re.M), res.output
    assert "0 of 4 task(s) can train" in res.output
    assert "Traceback" not in res.output


def test_three_month_purchase_log_says_what_each_task_can_do(tmp_path):
    from journey_stage.core.io import write_table

    full = pd.read_parquet(convert("cdnow", REAL / "cdnow" / "CDNOW_master.txt", tmp_path / "cdnow.parquet"))
    end = full["timestamp"].max().normalize() + pd.Timedelta(days=1)
    cut = tmp_path / "cdnow92.parquet"
    write_table(full[full["timestamp"] >= end - pd.Timedelta(days=92)].reset_index(drop=True), cut, taxonomy="cdnow")
    res = runner.invoke(app, ["check", "--events", str(cut), "--horizon", "conversion=30", "--test-from", "1998-06-01"])
    assert res.exit_code == 0, res.output
    out = res.output
    block = out.split("conversion (30-day horizon): ")[1]
    assert block.startswith("WEAK: protocol 'unpurged'") and "leakage risk" in block.splitlines()[0]
    assert re.search(r"^  protocol unpurged: \d validation cutoff\(s\), not purged; step 7 d, warm-up 7 d$", block, re.M)
    assert "history 62 days before the first test cutoff 1998-06-01 (log 92 days)" in block
    assert re.search(r"eligible customers per cutoff: train [\d,]+.*test 2,535", block)
    assert re.search(r"rows / positives: train [\d,]+ / [\d,]+, validation [\d,]+ / [\d,]+, test 2,535 / [\d,]+", block)
    assert "churn (91-day horizon): INSUFFICIENT: needs 61 more days of events after --test-from 1998-06-01" in out
    assert "advocacy (30-day horizon): INSUFFICIENT: needs at least 30 positive training rows, has 0" in out
    assert out.rstrip().endswith("2 of 4 task(s) can train: stage, conversion")


def test_check_names_a_bad_flag_in_one_line(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("customer_id,timestamp,event_type\nc1,2025-01-01,purchase\n")
    res = runner.invoke(app, ["check", "--events", str(f), "--horizon", "churn=soon"])
    assert res.exit_code == 2 and "error:" in res.output and "DAYS must be a number" in res.output

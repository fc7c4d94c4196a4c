"""The command line: help texts, one-line errors without tracebacks, generate/convert/validate."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from journey_stage.cli import app

runner = CliRunner()
COMMANDS = ["demo", "generate", "convert", "validate", "check", "train", "evaluate", "promote", "score", "serve", "bento", "profiles"]


def test_top_level_help_lists_every_command():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in COMMANDS:
        assert cmd in res.output


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_subcommand_has_help_with_options(cmd):
    res = runner.invoke(app, [cmd, "--help"])
    assert res.exit_code == 0
    assert "--" in res.output and len(res.output.splitlines()) > 4


def _one_line_error(res):
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert "error:" in res.output


def test_validate_bad_path_is_one_clear_line(tmp_path):
    res = runner.invoke(app, ["validate", "--events", str(tmp_path / "nope.parquet")])
    _one_line_error(res)
    assert "file or folder not found" in res.output


def test_train_bad_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    res = runner.invoke(app, ["train", "--events", str(bad)])
    _one_line_error(res)
    assert "cannot be read as Parquet" in res.output


def test_unknown_taxonomy_and_dataset(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("customer_id,timestamp,event_type\nc1,2025-01-01,purchase\n")
    _one_line_error(runner.invoke(app, ["validate", "--events", str(f), "--taxonomy", "nosuch"]))
    _one_line_error(runner.invoke(app, ["convert", "nosuch", str(f), "--out", str(tmp_path / "o.parquet")]))


def test_generate_then_validate_with_rejects(tmp_path):
    out = tmp_path / "events.parquet"
    res = runner.invoke(app, ["generate", "--customers", "200", "--out", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert df["customer_id"].nunique() >= 200
    res = runner.invoke(app, ["validate", "--events", str(out)])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,timestamp,event_type,value\nc1,2025-01-01,purchase,3\nc2,yesterday,purchase,1\nc3,2025-01-02,teleport,\n")
    rejects = tmp_path / "rejects.csv"
    res = runner.invoke(app, ["validate", "--events", str(bad), "--rejects", str(rejects)])
    assert res.exit_code == 1
    assert "row 2, column 'timestamp'" in res.output and "teleport" in res.output
    rej = pd.read_csv(rejects)
    assert list(rej["row"]) == [2, 3]
    assert rej["reject_reason"].str.len().min() > 10


def test_convert_cdnow_writes_preset(tmp_path):
    from pathlib import Path

    from journey_stage.core.io import taxonomy_hint

    src = Path(__file__).resolve().parents[2] / "data" / "real" / "cdnow" / "CDNOW_master.txt"
    out = tmp_path / "cdnow.parquet"
    res = runner.invoke(app, ["convert", "cdnow", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "69,659 events" in res.output and "23,570 customers" in res.output
    assert taxonomy_hint(out) == "cdnow"

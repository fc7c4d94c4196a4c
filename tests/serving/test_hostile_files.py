"""Hostile input files and paths for batch scoring (issue 13 defects 1 and 9).

Every test here failed before its fix. The reference is the one scoring path,
``journey_stage.model.scoring.score_events`` on the canonical events of ``journey_stage.core.io.read_events``:
a hostile file scores like the same file without its bad rows, and every bad row is in the rejects
file with its row number (data rows counted from 1 after the header) and a reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from batch_fixtures import batch_model  # noqa: F401

from journey_stage.core import io
from journey_stage.core.errors import InputError, JourneyError
from journey_stage.model.scoring import score_events
from journey_stage.serving.batch import score_file

HEADER = "customer_id,timestamp,event_type,channel,value,campaign"
TYPES = ["page_view", "ad_click", "product_view", "add_to_cart", "purchase", "email_open", "share"]


def clean_lines(n: int) -> list[str]:
    """``n`` valid data rows (row i+1 is element i): 9 customers, June 2025."""
    return [f"c{i % 9},2025-06-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,{TYPES[i % 7]},email,{i}.5,spring" for i in range(n)]


def write_csv(path: Path, lines: list[str | bytes], header: str = HEADER) -> Path:
    body = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    path.write_bytes(header.encode() + b"\n" + body)
    return path


def journey(home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real `journey` command in a subprocess, with the session model's MLflow store."""
    env = dict(os.environ, JOURNEY_HOME=str(home))
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "journey_stage.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI failed with one `error:` line (plus at most a hint) and no traceback; that line."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: ") and len(lines) <= 2, proc.stderr
    assert all(ln.startswith(("error:", "hint:")) for ln in lines), proc.stderr
    return lines[0]


def reference(predictor, path: Path) -> pd.DataFrame:
    ev = io.read_events(path, predictor.taxonomy).events
    return score_events(predictor, ev, ev["timestamp"].max()).sort_values("customer_id", ignore_index=True)


def scores(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values("customer_id", ignore_index=True)


# ---- defect 1: minimal valid input -------------------------------------------------------------

def test_cli_scores_a_minimal_file_like_the_python_api(batch_model, tmp_path):
    src = tmp_path / "r.csv"
    src.write_text("customer_id,timestamp,event_type\nc1,2025-06-01T10:00:00Z,purchase\n")
    out = tmp_path / "o.parquet"
    proc = journey(batch_model.home, "score", "--events", src, "--out", out, "--model", batch_model.uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    ref = reference(batch_model.predictor, src)
    assert len(ref) == 1
    pd.testing.assert_frame_equal(scores(out), ref)


@pytest.mark.parametrize("body", [
    "customer_id,timestamp,event_type\nc1,2025-06-01T10:00:00Z,purchase\nc2,2025-06-02T10:00:00Z,page_view\n",
    "customer_id,timestamp,event_type,channel,value,campaign\nc1,2025-06-01T10:00:00Z,purchase,,,\nc2,2025-06-01T11:00:00Z,ad_click,,,\n",
    "customer_id,timestamp,event_type,channel,campaign\nc1,2025-06-01T10:00:00Z,purchase,email,\nc1,2025-06-01T11:00:00Z,share,email,\n",
    "customer_id,timestamp,event_type,channel,campaign\nc1,2025-06-01T10:00:00Z,purchase,,spring\n",
], ids=["required-only", "all-optional-empty", "no-campaign", "no-channel"])
def test_partitions_without_channel_or_campaign_values_score(batch_model, tmp_path, body):
    src = tmp_path / "events.csv"
    src.write_text(body)
    out = tmp_path / "s.parquet"
    counts = score_file(src, out, predictor=batch_model.predictor, partitions=3)
    ref = reference(batch_model.predictor, src)
    pd.testing.assert_frame_equal(scores(out), ref)
    assert counts["scored"] == len(ref) >= 1


# ---- defect 9 (a), (b): an output that is an input, or the other output ------------------------

def test_out_or_rejects_on_the_input_is_refused_in_one_line(batch_model, tmp_path):
    src = write_csv(tmp_path / "events.csv", clean_lines(20))
    before = src.read_bytes()
    line = one_error_line(journey(batch_model.home, "score", "--events", src, "--out", src, "--model", batch_model.uri))
    assert "--out" in line and "events.csv" in line and "input" in line
    line = one_error_line(journey(batch_model.home, "validate", "--events", src, "--rejects", tmp_path / "." / "events.csv"))
    assert "--rejects" in line and "events.csv" in line
    assert src.read_bytes() == before
    # the Python API refuses too, before any work; also for a folder that would contain an output
    folder = tmp_path / "in"
    folder.mkdir()
    write_csv(folder / "part-1.csv", clean_lines(10))
    for events, out, rejects in [(src, src, None), (src, tmp_path / "s.parquet", src), (folder, folder / "scores.parquet", None),
                                 (folder, tmp_path / "s.parquet", folder / "sub" / "rejects.csv")]:
        with pytest.raises(JourneyError, match="input"):
            score_file(events, out, predictor=batch_model.predictor, rejects=rejects)
    assert src.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["part-1.csv"]
    assert not (tmp_path / "s.parquet").exists()


def test_rejects_equal_to_out_is_refused_in_one_line(batch_model, tmp_path):
    src = write_csv(tmp_path / "events.csv", clean_lines(20) + ["c1,yesterday,purchase,email,1,spring"])
    out = tmp_path / "s.parquet"
    line = one_error_line(journey(batch_model.home, "score", "--events", src, "--out", out, "--rejects", out, "--model", batch_model.uri))
    assert "--rejects" in line and "--out" in line and "s.parquet" in line
    assert not out.exists()
    with pytest.raises(JourneyError, match="--out"):
        score_file(src, out, predictor=batch_model.predictor, rejects=tmp_path / "x" / ".." / "s.parquet")
    assert not out.exists()


# ---- defect 9 (c), (d), (e): rows that are not rows ---------------------------------------------

def hostile_lines() -> tuple[list[str | bytes], dict[int, str]]:
    """120 data rows with malformed ones; returns the lines and {bad row: words of its reason}."""
    lines: list[str | bytes] = list(clean_lines(120))
    lines[0] = lines[0] + ",surplus"  # row 1: one field too many (pandas took the first column as the index)
    lines[4] = lines[4].replace(",email,", ',"email,')  # row 5: a stray quote opens a value ...
    lines[13] = lines[13].replace(",email,", ',"email,')  # ... and row 14 another: pandas merged rows 5-14 into one
    lines[24] = lines[24].replace(lines[24].split(",")[1], "yesterday")  # row 25: an ordinary bad timestamp
    lines[29] = lines[29].rsplit(",", 1)[0]  # row 30: one field missing (pandas padded it silently)
    lines[49] = lines[49].encode().replace(b"spring", b"spr\xe9ing")  # row 50: not UTF-8 (Latin-1)
    lines[100] = lines[100] + ",x"  # row 101, line 102 of the file
    bad = {1: "expected 6 fields", 5: "quote", 14: "quote", 25: "timestamp", 30: "expected 6 fields", 50: "UTF-8",
           101: "expected 6 fields"}
    return lines, bad


def test_an_unbalanced_quote_does_not_merge_rows_or_shift_row_numbers(batch_model, tmp_path):
    """pandas read rows 5-14 as one row (a 600-character channel) and called row 25 row 16."""
    lines = clean_lines(30)
    lines[4] = lines[4].replace(",email,", ',"email,')
    lines[13] = lines[13].replace(",email,", ',"email,')
    lines[24] = lines[24].replace(lines[24].split(",")[1], "yesterday")
    src = write_csv(tmp_path / "events.csv", lines)
    good = write_csv(tmp_path / "good.csv", [ln for i, ln in enumerate(lines, 1) if i not in (5, 14, 25)])
    out, rej = tmp_path / "s.parquet", tmp_path / "r.parquet"
    counts = score_file(src, out, predictor=batch_model.predictor, rejects=rej)
    rejects = pd.read_parquet(rej)
    assert rejects["row"].tolist() == [5, 14, 25]
    assert all("quote" in r for r in rejects["reject_reason"][:2]) and "row 25" in rejects["reject_reason"][2]
    assert counts["input_rows"] == 30 and counts["rejected"] == 3
    pd.testing.assert_frame_equal(scores(out), reference(batch_model.predictor, good))


def test_malformed_rows_are_rejected_one_by_one_and_the_rest_is_scored(batch_model, tmp_path):
    lines, bad = hostile_lines()
    src = write_csv(tmp_path / "events.csv", lines)
    good = write_csv(tmp_path / "good.csv", [ln for i, ln in enumerate(lines, 1) if i not in bad])
    out, rej = tmp_path / "s.parquet", tmp_path / "rejects.csv"
    counts = score_file(src, out, predictor=batch_model.predictor, rejects=rej, batch_rows=16)
    pd.testing.assert_frame_equal(scores(out), reference(batch_model.predictor, good))  # rows 6-13 are scored too
    rejects = pd.read_csv(rej, dtype=str, keep_default_na=False)
    assert rejects["row"].astype(int).tolist() == sorted(bad)  # the rows of the file, counted after the header
    for (row, words), reason in zip(sorted(bad.items()), rejects["reject_reason"]):
        assert f"row {row}" in reason and words in reason, reason
    assert "\n" not in "".join(rejects["reject_reason"])
    assert counts["rejected"] == len(bad) and counts["input_rows"] == 120
    assert counts["events"] + counts["rejected"] + counts["duplicates"] == counts["input_rows"]
    # the same reader for `journey validate` / `journey train` (journey_stage.core.io.read_events), any chunk size
    v = io.read_events(src, batch_model.predictor.taxonomy, allow_rejects=True)
    assert v.rejects["row"].tolist() == sorted(bad) and v.rejects["reject_reason"].tolist() == rejects["reject_reason"].tolist()
    assert v.n_problems == counts["problems"]
    with pytest.raises(InputError, match="row 1: expected 6 fields"):
        io.read_events(src, batch_model.predictor.taxonomy)


def test_without_rejects_a_malformed_row_is_one_line_naming_file_and_row(batch_model, tmp_path):
    lines = clean_lines(150)
    lines[100] = lines[100] + ",x"
    src = write_csv(tmp_path / "events.csv", lines)
    out = tmp_path / "s.parquet"
    line = one_error_line(journey(batch_model.home, "score", "--events", src, "--out", out, "--model", batch_model.uri))
    assert f"{src}: 1 problem(s): {src}, row 101: expected 6 fields" in line and "line" not in line
    assert not out.exists()
    # with --rejects only that row is diverted; the other 149 rows are scored
    proc = journey(batch_model.home, "score", "--events", src, "--out", out, "--rejects", tmp_path / "r.csv", "--model", batch_model.uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 rows rejected" in proc.stdout
    assert pd.read_csv(tmp_path / "r.csv")["row"].tolist() == [101]


def test_validate_lists_the_bad_rows_of_a_hostile_file(batch_model, tmp_path):
    lines, bad = hostile_lines()
    src = write_csv(tmp_path / "events.csv", lines)
    proc = journey(batch_model.home, "validate", "--events", src, "--rejects", tmp_path / "r.parquet")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for row in bad:
        assert re.search(rf"events\.csv, row {row}\b", proc.stdout), row
    assert f"{len(bad)} invalid row(s)" in proc.stdout
    assert pd.read_parquet(tmp_path / "r.parquet")["row"].tolist() == sorted(bad)


def test_a_file_of_one_non_utf8_byte_is_a_row_problem(batch_model, tmp_path):
    lines: list[str | bytes] = list(clean_lines(12))
    lines[9] = lines[9].encode().replace(b"email", b"e\xffmail")
    src = write_csv(tmp_path / "events.csv", lines)
    with pytest.raises(InputError, match=r"row 10: expected UTF-8 text"):
        score_file(src, tmp_path / "s.parquet", predictor=batch_model.predictor)
    counts = score_file(src, tmp_path / "s.parquet", predictor=batch_model.predictor, rejects=tmp_path / "r.parquet")
    assert counts["rejected"] == 1 and counts["input_rows"] == 12


def test_blank_lines_and_crlf_keep_working(batch_model, tmp_path):
    """Not malformed: blank lines are skipped (not counted), CRLF line ends and quoted fields are read as before."""
    lines = clean_lines(30)
    lines[3] = lines[3].replace(",email,", ',"email",')
    text = (HEADER + "\r\n" + "\r\n".join(lines[:10]) + "\r\n\r\n" + "\r\n".join(lines[10:]) + "\r\n\r\n").encode()
    src = tmp_path / "events.csv"
    src.write_bytes(text)
    plain = write_csv(tmp_path / "plain.csv", clean_lines(30))
    out = tmp_path / "s.parquet"
    counts = score_file(src, out, predictor=batch_model.predictor, rejects=tmp_path / "r.csv")
    assert counts["rejected"] == 0 and counts["input_rows"] == 30
    pd.testing.assert_frame_equal(scores(out), reference(batch_model.predictor, plain))


# ---- the Spark engine on the same files (local[1]) ---------------------------------------------

@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    from journey_stage.serving.spark import get_session

    session, _ = get_session("local[1]")
    yield session
    session.stop()


@pytest.mark.slow
def test_spark_minimal_and_hostile_files_like_local(spark, batch_model, tmp_path):
    src = tmp_path / "r.csv"
    src.write_text("customer_id,timestamp,event_type\nc1,2025-06-01T10:00:00Z,purchase\n")
    score_file(src, tmp_path / "spark.parquet", predictor=batch_model.predictor, engine="spark", partitions=2)
    pd.testing.assert_frame_equal(scores(tmp_path / "spark.parquet"), reference(batch_model.predictor, src))

    lines, bad = hostile_lines()
    hostile = write_csv(tmp_path / "events.csv", lines)
    got = {}
    for engine in ("local", "spark"):
        got[engine] = score_file(hostile, tmp_path / f"{engine}-h.parquet", predictor=batch_model.predictor, engine=engine,
                                 rejects=tmp_path / f"{engine}-r.parquet", partitions=4)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local-h.parquet"), pd.read_parquet(tmp_path / "spark-h.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local-r.parquet"), pd.read_parquet(tmp_path / "spark-r.parquet"))
    assert pd.read_parquet(tmp_path / "spark-r.parquet")["row"].tolist() == sorted(bad)
    keys = ("scored", "rejected", "input_rows", "events", "problems")
    assert {k: got["local"][k] for k in keys} == {k: got["spark"][k] for k in keys}

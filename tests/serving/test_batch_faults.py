"""Fault injection for batch scoring (issue 13 defects 5 and 9 f, g): signals to `journey score`
with worker processes, stale temporary files of killed runs, unwritable outputs, file modes.

Every test here failed before its fix. The CLI runs in a subprocess with its output in files
(not pipes: a surviving worker would hold a pipe open) and its process tree is watched with psutil.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from batch_fixtures import batch_model  # noqa: F401

from journey_stage.core import io
from journey_stage.core.errors import JourneyError
from journey_stage.serving.batch import score_file

STARTUP_S = 120  # CLI start, model load and worker start on a busy 2-core machine
GONE_S = 20  # after the signal: every process of the tree gone


def journey_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "journey_stage.cli", *map(str, args)]


def journey_env(home: Path) -> dict:
    env = dict(os.environ, JOURNEY_HOME=str(home))
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def err_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def is_worker(p: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(p.cmdline())
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def big_events(tmp_path_factory) -> Path:
    """About 620,000 events (30,000 customers): many seconds of work with two workers (the runs are stopped early)."""
    from journey_stage.synthetic.generate import generate_events

    path = tmp_path_factory.mktemp("faults-in") / "big.parquet"
    io.write_table(generate_events(30000, seed=5), path, taxonomy="five_stage")
    return path


@pytest.fixture(scope="module")
def small_events(tmp_path_factory) -> Path:
    from journey_stage.synthetic.generate import generate_events

    path = tmp_path_factory.mktemp("faults-small") / "small.parquet"
    io.write_table(generate_events(200, seed=8), path, taxonomy="five_stage")
    return path


def start_scoring(batch_model, events: Path, out: Path, logs: Path):
    """`journey score --workers 2` started and given time to create its spill folder and workers."""
    stdout, stderr = open(logs / "stdout.txt", "w"), open(logs / "stderr.txt", "w")
    proc = subprocess.Popen(journey_cmd("score", "--events", events, "--out", out, "--workers", 2, "--model", batch_model.uri),
                            stdout=stdout, stderr=stderr, env=journey_env(batch_model.home))
    stdout.close()
    stderr.close()
    me = psutil.Process(proc.pid)
    deadline = time.time() + STARTUP_S
    tree: dict[int, psutil.Process] = {}
    while time.time() < deadline and proc.poll() is None:
        try:
            for p in me.children(recursive=True):
                tree.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            break
        spill = [p for p in out.parent.iterdir() if ".spill-" in p.name]
        if spill and sum(is_worker(p) for p in alive(list(tree.values()))) >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # let the workers get busy
    assert proc.poll() is None, "the run ended before it could be interrupted: use a bigger input"
    for p in me.children(recursive=True):
        tree.setdefault(p.pid, p)
    assert sum(is_worker(p) for p in tree.values()) >= 2, "no worker processes were started"
    return proc, list(tree.values())


def wait_gone(procs: list[psutil.Process]) -> list[psutil.Process]:
    deadline = time.time() + GONE_S
    while alive(procs) and time.time() < deadline:
        time.sleep(0.2)
    left = alive(procs)
    for p in left:  # do not leave them running after a failed assertion
        p.kill()
    return left


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_sigterm_cleans_up_like_ctrl_c(batch_model, big_events, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc, tree = start_scoring(batch_model, big_events, out_dir / "scores.parquet", tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        survivors = wait_gone(tree)
    assert survivors == [], f"processes of the run still alive {GONE_S} s after SIGTERM: {survivors}"
    assert rc > 0, f"killed by the signal ({rc}) instead of stopping cleanly"
    lines = err_lines(tmp_path / "stderr.txt")
    assert len(lines) == 1 and "interrupted" in lines[0], lines
    assert leftovers(out_dir, set()) == []  # no output, no temporary file, no spill folder


def test_sigkill_workers_die_and_the_next_run_removes_the_leftovers(batch_model, big_events, small_events, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "scores.parquet"
    proc, tree = start_scoring(batch_model, big_events, out, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    survivors = wait_gone(tree)
    assert survivors == [], f"worker processes still alive {GONE_S} s after their parent was killed: {survivors}"
    stale = leftovers(out_dir, set())
    assert stale and all(name.startswith(".scores.parquet.") for name in stale)  # a killed run cannot clean up
    done = subprocess.run(journey_cmd("score", "--events", small_events, "--out", out, "--model", batch_model.uri),
                          capture_output=True, text=True, env=journey_env(batch_model.home), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert leftovers(out_dir, {"scores.parquet"}) == []


def test_leftovers_of_live_runs_are_kept(batch_model, small_events, tmp_path):
    """Only temporary files and spill folders whose owner process is gone are removed."""
    out = tmp_path / "scores.parquet"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = io.owner_tag()
    theirs = mine.replace(f"{os.getpid()}-", f"{dead.pid}-", 1)
    assert theirs != mine
    (tmp_path / f".scores.parquet.{theirs}.abc123.tmp").write_text("partial")
    (tmp_path / f".scores.parquet.spill-{theirs}.xyz").mkdir()
    (tmp_path / f".scores.parquet.spill-{theirs}.xyz" / "seq-000000.arrow").write_text("x")
    (tmp_path / f".scores.parquet.{mine}.def456.tmp").write_text("being written")
    (tmp_path / f".other.parquet.{theirs}.abc123.tmp").write_text("another output's")
    score_file(small_events, out, predictor=batch_model.predictor)
    assert leftovers(tmp_path, {"scores.parquet"}) == [f".other.parquet.{theirs}.abc123.tmp", f".scores.parquet.{mine}.def456.tmp"]


# ---- unwritable output (9 f) and the mode of outputs (9 g) --------------------------------------

def unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere a mode allows; sysfs takes no new files
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_unwritable_out_is_one_line_before_any_work(batch_model, tmp_path):
    src = tmp_path / "events.csv"
    src.write_text("customer_id,timestamp,event_type\nc1,2025-06-01T10:00:00Z,purchase\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = [(a_file / "scores.parquet", "is a file"), (a_file / "sub" / "scores.parquet", "is a file"),
             (unwritable_folder(tmp_path) / "journey-test-scores.parquet", "not writable")]
    for out, words in cases:
        # a model that does not exist: the output is checked first, so this is not what fails
        proc = subprocess.run(journey_cmd("score", "--events", src, "--out", out, "--model", "models:/no-such-model/1"),
                              capture_output=True, text=True, env=journey_env(batch_model.home), timeout=300)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "Traceback" not in proc.stdout + proc.stderr
        lines = err_lines_of(proc.stderr)
        assert lines[0].startswith("error: ") and str(out) in lines[0] and words in lines[0], lines
        assert len(lines) <= 2 and all(ln.startswith(("error:", "hint:")) for ln in lines), lines
    with pytest.raises(JourneyError, match="rejects"):
        score_file(src, tmp_path / "s.parquet", predictor=batch_model.predictor, rejects=a_file / "r.csv")
    assert a_file.read_text() == "not a folder" and not (tmp_path / "s.parquet").exists()


def err_lines_of(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_outputs_get_the_mode_of_a_normal_file(batch_model, small_events, tmp_path, umask):
    raw = pd.read_parquet(small_events).astype({"timestamp": str})
    raw.loc[0, "timestamp"] = "yesterday"
    src = tmp_path / "events.csv"
    raw.to_csv(src, index=False)
    old = os.umask(umask)
    try:
        score_file(src, tmp_path / "s.parquet", predictor=batch_model.predictor, rejects=tmp_path / "r.csv")
        score_file(src, tmp_path / "s.csv.gz", predictor=batch_model.predictor, rejects=tmp_path / "r.parquet")
        io.write_table(raw, tmp_path / "copy.parquet")
        (tmp_path / "normal.txt").write_text("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert (tmp_path / "normal.txt").stat().st_mode & 0o777 == expected
    for name in ("s.parquet", "r.csv", "s.csv.gz", "r.parquet", "copy.parquet"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name

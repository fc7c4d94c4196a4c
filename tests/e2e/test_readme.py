"""README.md is runnable and its tables are the JSON results (issue 7).

Every fenced block of README.md is exercised, and a new block that nothing exercises fails
``test_every_block_is_exercised``:

* ``EXECUTED`` blocks are run here, command by command, from a temporary folder standing in for
  the repository root (``data/`` linked in) with a clean environment (no ``JOURNEY_*``,
  ``MLFLOW_*`` or ``BENTOML_*`` of the caller, so ``JOURNEY_HOME`` is the default ``./.journey``
  of that folder). The commands are the README's own text; the only changes are listed in
  ``SMALL_INPUTS`` / ``SHRINK`` (small inputs where the README's are big) and the server's port
  (a free port instead of 3000). ``journey serve`` is started in the background, probed until
  ready, used by the next commands of the block (the README's ``curl``) and stopped at the end of
  the block.
  Python blocks run in a subprocess (``exec`` of the block's text) in the same folder.
* Commands that cannot run inside the test suite, or cost too much here, are in ``MAPPED``: the
  set-up and test commands to ``.ci/run`` (checked to run the same command), ``mlflow ui`` to
  the test that runs a real MLflow server (checked to exist; the store ``mlflow ui`` names is
  opened here), the benchmark scripts to ``--help`` (every option the README passes must
  exist) plus the JSON result each one writes, which ``benchmarks/readme_tables.py`` renders
  into the README.
* The diagram (no language) is checked for the files it names.

``test_tables_match_the_json_results`` runs ``benchmarks/readme_tables.py --check``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pytest

from serving_fixtures import free_port, load_failure, stop_process_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# ---- the README's blocks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    section: str  # the "## " heading above the block
    lang: str
    text: str
    line: int  # 1-based line of the opening fence

    @property
    def key(self) -> tuple[str, str]:
        """(section, first line without its trailing comment)."""
        return (self.section, re.sub(r"\s+#\s.*$", "", self.text.strip().splitlines()[0]).strip())

    def commands(self) -> list[str]:
        """Shell command lines, trailing comments removed."""
        out = []
        for raw in self.text.splitlines():
            cmd = re.sub(r"\s+#\s.*$", "", raw).strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
        return out

    def steps(self) -> list[str]:
        """Each command split at `&&` (every part must succeed, as in the shell)."""
        return [s.strip() for c in self.commands() for s in c.split(" && ")]


def readme_blocks(text: str | None = None) -> list[Block]:
    text = README.read_text() if text is None else text
    blocks, section, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        m = re.match(r"^```(\S*)\s*$", line)
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            assert j < len(lines), f"README.md line {i + 1}: unclosed code block"
            blocks.append(Block(section, m.group(1), "\n".join(lines[i + 1:j]) + "\n", i + 1))
            i = j
        i += 1
    return blocks


def block(key: tuple[str, str]) -> Block:
    found = [b for b in readme_blocks() if b.key == key]
    assert len(found) == 1, f"README.md has {len(found)} block(s) {key!r} (update EXECUTED / the README)"
    return found[0]


# Blocks run here: (section, first line) -> the test of this module that runs it.
SETUP = ("Set up", 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && journey demo')
DATA_SCIENTIST = ("Quick start by user", "journey convert cdnow data/real/cdnow/CDNOW_master.txt --out cdnow.parquet")
CRM = ("Quick start by user", "JOURNEY_HOME=journey-demo/mlflow journey serve --port 3000")
BATCH = ("Quick start by user", "export JOURNEY_HOME=journey-demo/mlflow")
PYTHON = ("Quick start by user", "import os")
RESULTS = ("Results on real data", "journey convert cdnow data/real/cdnow/CDNOW_master.txt --out cdnow.parquet")
ARCHITECTURE = ("Architecture", "journey_stage (cli/)        cli/cli.py  the `journey` command (typer + rich)")
EXECUTED = {
    SETUP: "test_setup_block_demo",
    DATA_SCIENTIST: "test_data_scientist_block",
    CRM: "test_crm_block_serve_and_curl",
    BATCH: "test_batch_block",
    PYTHON: "test_python_block",
    RESULTS: "test_results_block",
    ARCHITECTURE: "test_architecture_names_existing_files",
}

# Steps not run here: step -> (kind, what exercises it); checked by test_mapped_steps.
CI = ROOT / ".ci" / "run"
MAPPED = {
    "python3 -m venv .venv": ("ci", "python3 -m venv .venv"),
    ". .venv/bin/activate": ("ci", ". .venv/bin/activate"),
    'pip install -e ".[test]"': ("ci", 'pip install -q -e ".[test]"'),
    "python -m pytest -q -n 2 --dist loadfile": ("ci", "python -m pytest -q -n 2 --dist loadfile"),
    # `mlflow ui` takes 20-40 s to start on 2 cores: test_data_scientist_block opens the store it
    # names (the URI as the shell expands it) and finds the promoted model; a real MLflow server
    # process on a SQLite store is run by tests/training/test_training.py
    "mlflow ui --backend-store-uri sqlite:///$PWD/.journey/mlflow.db":
        ("test", "tests/training/test_training.py::test_cycle_against_real_mlflow_server"),
    "python benchmarks/bench_generate.py": ("bench", "generate.json"),
    "python benchmarks/bench_features.py": ("bench", "features.json"),
    "python benchmarks/bench_train.py --customers 200000": ("bench", "train.json"),
    "python benchmarks/bench_service.py --seconds 60 --rate 100": ("bench", "service.json"),
    "python benchmarks/bench_service.py --sweep 100,200,300,400 --sweep-seconds 60": ("bench", "service_overload.json"),
    "python benchmarks/bench_batch.py": ("bench", "batch.json"),
    "python benchmarks/bench_profiles.py": ("bench", "profiles.json"),
}

# Small inputs where the README's are big.
SMALL_INPUTS = {"journey demo": "journey demo --customers 300"}  # 6,000 customers, ~2 min -> 300, ~25 s
SHRINK = {"cdnow": 600}  # customers kept of a `journey convert` output (Olist's 8,000 leads are small)
SERVERS = {"journey serve": "/readyz"}  # started in the background; value: readiness probe


# ---- the sandbox that runs them -----------------------------------------------------------------


@dataclass
class Sandbox:
    root: Path
    env: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)  # README step -> stdout + stderr
    seconds: dict[str, float] = field(default_factory=dict)  # command as run -> wall time
    done: set[str] = field(default_factory=set)  # README steps already run successfully here

    def bash(self, prelude: list[str], step: str, timeout: float = 900) -> subprocess.CompletedProcess:
        script = "\n".join(["set -e", *prelude, step])
        return subprocess.run(["bash", "-c", script], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)

    def run_block(self, b: Block, while_up: dict | None = None, after_step: Callable[[str], None] | None = None) -> dict[str, str]:
        """Run every step of ``b`` not in MAPPED; return {README step: output}. ``while_up``:
        {server: check(url)} called as soon as that server of the block is ready."""
        prelude: list[str] = []
        ports: dict[str, str] = {}
        outputs: dict[str, str] = {}
        with contextlib.ExitStack() as servers:
            for step in b.steps():
                if step in MAPPED:
                    continue
                if step.startswith("export "):
                    prelude.append(step)
                    continue
                if step in self.done and not any(s in step for s in SERVERS):
                    outputs[step] = self.outputs[step]
                    continue
                run = SMALL_INPUTS.get(step, step)
                for old, new in ports.items():
                    run = run.replace(old, new)
                server = next((s for s in SERVERS if s in run), None)
                if server:
                    url, run = self.port_of(server, run, ports)
                    t0 = time.perf_counter()
                    servers.enter_context(self.background(prelude, run, url + SERVERS[server]))
                    self.seconds[run + " (until ready)"] = time.perf_counter() - t0
                    (while_up or {}).get(server, lambda url: None)(url)
                    outputs[step] = url
                    continue
                t0 = time.perf_counter()
                proc = self.bash(prelude, run)
                self.seconds[run] = time.perf_counter() - t0
                out = proc.stdout + proc.stderr
                assert proc.returncode == 0, f"README.md line {b.line}+: `{run}` exited with {proc.returncode}:\n{out[-4000:]}"
                self.outputs[step] = outputs[step] = out
                self.done.add(step)
                self.after(run)
                if after_step is not None:
                    after_step(step)
        return outputs

    @staticmethod
    def port_of(server: str, run: str, ports: dict[str, str]) -> tuple[str, str]:
        """--port 3000 -> a free port, also in the block's later `curl localhost:3000`."""
        port = str(free_port())
        ports["localhost:3000"] = f"localhost:{port}"
        return f"http://127.0.0.1:{port}", run.replace("--port 3000", f"--port {port}")

    @contextlib.contextmanager
    def background(self, prelude: list[str], run: str, probe: str, timeout: float = 420):
        import httpx

        log_path = self.root / f"server-{time.time_ns()}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(["bash", "-c", "\n".join([*prelude, run])], cwd=self.root, env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = probe.rsplit("/", 1)[0]
        try:
            deadline = time.time() + timeout
            while True:
                assert proc.poll() is None, f"`{run}` exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(probe, timeout=5).status_code == 200:
                        break
                    if "/readyz" in probe and (failed := load_failure(base)):
                        raise AssertionError(f"`{run}` could not load its model: {failed}")
                assert time.time() < deadline, f"`{run}` not ready after {timeout:.0f} s:\n{log_path.read_text()[-4000:]}"
                time.sleep(1)
            yield
        finally:
            stop_process_group(proc)  # SIGTERM to its group, then SIGKILL by id to what is left

    def after(self, run: str) -> None:
        """Small inputs: shrink the output of a `journey convert` to SHRINK customers."""
        argv = shlex.split(run)
        if argv[:2] == ["journey", "convert"] and argv[2] in SHRINK:
            from journey_stage.core.io import taxonomy_hint, write_table

            out = self.root / argv[argv.index("--out") + 1]
            df = pd.read_parquet(out)
            ids = sorted(df["customer_id"].unique())
            keep = set(ids[:: max(1, len(ids) // SHRINK[argv[2]])])
            keep |= set(df.loc[[df["timestamp"].idxmin(), df["timestamp"].idxmax()], "customer_id"])  # the same time span
            write_table(df[df["customer_id"].isin(keep)].reset_index(drop=True), out, taxonomy=taxonomy_hint(out))


def clean_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "MLFLOW_", "BENTOML_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PWD"] = str(root)
    env["BENTOML_HOME"] = str(root / ".bentoml")
    env["BENTOML_DO_NOT_TRACK"] = "true"
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return env


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    """A stand-in for the repository root where the set-up block (`journey demo`) has run."""
    root = tmp_path_factory.mktemp("readme")
    (root / "data").symlink_to(ROOT / "data")
    sb = Sandbox(root, clean_env(root))
    sb.run_block(block(SETUP))
    yield sb
    print("\nREADME commands, wall seconds:\n" + "\n".join(f"{v:6.1f}  {k[:110]}" for k, v in sb.seconds.items()))


# ---- every block is exercised -------------------------------------------------------------------


def test_every_block_is_exercised():
    names = {n for n, v in globals().items() if n.startswith("test_") and callable(v)}
    problems = []
    for b in readme_blocks():
        if b.key in EXECUTED:
            if EXECUTED[b.key] not in names:
                problems.append(f"line {b.line}: mapped to {EXECUTED[b.key]}, which is not a test of {__name__}")
        elif b.lang == "bash" and b.steps() and all(s in MAPPED for s in b.steps()):
            pass
        else:
            unmapped = [s for s in b.steps() if s not in MAPPED] if b.lang == "bash" else [b.key[1]]
            problems.append(f"line {b.line} ({b.section}, {b.lang or 'no language'}): not run by a test nor mapped: {unmapped}")
    keys = {b.key for b in readme_blocks()}
    problems += [f"EXECUTED names a block the README no longer has: {k}" for k in EXECUTED if k not in keys]
    steps = {s for b in readme_blocks() if b.lang == "bash" for s in b.steps()}
    problems += [f"MAPPED names a step the README no longer has: {s!r}" for s in MAPPED if s not in steps]
    assert not problems, "README.md blocks without a test:\n" + "\n".join(problems)


def test_an_unexercised_block_is_caught(monkeypatch):
    """The check above fails for a block added without coverage (guards the guard)."""
    extra = README.read_text() + "\n## New\n\n```bash\njourney frobnicate --all\n```\n"
    monkeypatch.setattr(sys.modules[__name__], "README", _Text(extra))
    with pytest.raises(AssertionError, match="journey frobnicate"):
        test_every_block_is_exercised()


class _Text:
    def __init__(self, text: str):
        self.text = text

    def read_text(self) -> str:
        return self.text


def _test_exists(test_id: str) -> bool:
    path, _, name = test_id.partition("::")
    tree = ast.parse((ROOT / path).read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


def test_mapped_steps():
    ci = CI.read_text()
    for step, (kind, target) in MAPPED.items():
        if kind == "ci":
            assert target in ci and step in (target, target.replace(" -q", "")), f"{step!r}: .ci/run does not run {target!r}"
        elif kind == "test":
            assert _test_exists(target), f"{step!r} is mapped to {target}, which does not exist"
        elif kind == "bench":
            argv = shlex.split(step)
            script = ROOT / argv[1]
            assert f'"{target}"' in script.read_text(), f"{script.name} does not write {target}"
            assert f'"{target}"' in (ROOT / "benchmarks" / "readme_tables.py").read_text(), f"readme_tables.py does not render {target}"
        else:
            raise AssertionError(f"unknown kind {kind!r}")


@pytest.mark.parametrize("step", [s for s, (k, _) in MAPPED.items() if k == "bench"])
def test_benchmark_commands_parse(step):
    """The README's benchmark commands are too long for the suite: their options must exist."""
    argv = shlex.split(step)
    proc = subprocess.run([sys.executable, argv[1], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for opt in [a for a in argv[2:] if a.startswith("--")]:
        assert opt in proc.stdout, f"{argv[1]} has no option {opt}"


# ---- the blocks, run --------------------------------------------------------------------------


def test_setup_block_demo(sandbox):
    out = sandbox.outputs["journey demo"]
    assert "promoted to champion" in out, out[-3000:]
    demo = sandbox.root / "journey-demo"
    for f in ("events.parquet", "scores.parquet", "report/report.html", "report/report.json", "mlflow/mlflow.db"):
        assert (demo / f).exists(), f
    assert "journey serve --port 3000" in " ".join(out.split())  # the demo prints how to serve its model, as the README does


def test_data_scientist_block(sandbox):
    from mlflow import MlflowClient

    b = block(DATA_SCIENTIST)
    outputs = sandbox.run_block(b)
    assert "23,570 customers" in outputs["journey convert cdnow data/real/cdnow/CDNOW_master.txt --out cdnow.parquet"]
    assert "0 invalid row(s)" in outputs["journey validate --events cdnow.parquet"]
    report = json.loads((sandbox.root / "cdnow-report" / "report.json").read_text())
    assert report["tasks"]["churn"]["model"]["roc_auc"] > 0.5
    assert "promoted to champion" in outputs["journey promote"]
    # the store `mlflow ui` is pointed at (as the shell expands it) holds the promoted model
    (ui,) = [s for s in b.steps() if s.startswith("mlflow ui")]
    uri = sandbox.bash([], f"printf %s {shlex.split(ui)[-1]}").stdout
    assert uri == f"sqlite:///{sandbox.root}/.journey/mlflow.db"
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model("journey-stage")
    assert {"champion", "challenger"} <= set(model.aliases)


def test_crm_block_serve_and_curl(sandbox):
    b = block(CRM)
    outputs = sandbox.run_block(b)
    curl = [s for s in b.steps() if s.startswith("curl ")]
    assert len(curl) == 1
    body = json.loads(shlex.split(curl[0])[shlex.split(curl[0]).index("-d") + 1])
    answer = json.loads(outputs[curl[0]])
    (pred,) = answer["predictions"]
    assert pred["customer_id"] == body["customers"][0]["customer_id"] == "c1"
    assert pred["as_of"].startswith(body["as_of"][:10])
    probs = pred["stage_probabilities"]
    assert pred["stage"] in probs and abs(sum(probs.values()) - 1) < 1e-6
    assert pred["churn_probability"] is None  # c1 has not converted
    assert 0 <= pred["conversion_probability"] <= 1 and pred["next_best_action"]["action"]
    assert pred["model"]["name"] == "journey-stage"


def test_batch_block(sandbox):
    b = block(BATCH)
    local, spark = [s for s in b.steps() if s.startswith("journey score")]
    assert "--engine spark" in spark and "--engine" not in local
    demo = pd.read_parquet(sandbox.root / "journey-demo" / "scores.parquet")  # the demo's own (local) scores
    scores: dict[str, pd.DataFrame] = {}

    def keep_local_output(step: str) -> None:  # both lines write scores.parquet: read it in between
        scores[step] = pd.read_parquet(sandbox.root / "scores.parquet")

    outputs = sandbox.run_block(b, after_step=keep_local_output)
    for step in (local, spark):
        scored = int(re.search(r"scored ([\d,]+) customers", outputs[step]).group(1).replace(",", ""))
        assert len(scores[step]) == scored > 0
        assert {"customer_id", "stage", "churn_probability", "next_best_action"} <= set(scores[step].columns)
        # the same customers with the same model as the demo scored them: local == Spark == demo
        pd.testing.assert_frame_equal(scores[step], demo)


def test_python_block(sandbox):
    b = block(PYTHON)
    assert b.lang == "python"
    (sandbox.root / "readme_block.py").write_text(b.text)
    runner = (
        "import json\n"
        "ns = {}\n"
        "exec(compile(open('readme_block.py').read(), 'README.md python block', 'exec'), ns)\n"
        "s = ns['scores']\n"
        "print('RESULT ' + json.dumps({'rows': len(s), 'columns': list(s.columns),"
        " 'p': [float(s[c].min()) for c in s.columns if c.endswith('_probability')]"
        " + [float(s[c].max()) for c in s.columns if c.endswith('_probability')]}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", runner], cwd=sandbox.root, env=sandbox.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["rows"] > 0
    assert {"customer_id", "stage", "next_best_action"} <= set(result["columns"])
    assert all(0 <= p <= 1 for p in result["p"] if p == p)
    assert "customer_id" in proc.stdout  # the block prints its first rows


def test_results_block(sandbox):
    outputs = sandbox.run_block(block(RESULTS))
    olist = json.loads((sandbox.root / "olist-report" / "report.json").read_text())
    assert "roc_auc" in olist["tasks"]["conversion"]["model"]
    assert olist["settings"]["horizons_days"]["conversion"] == 90
    assert any("olist" in s for s in outputs)


def test_results_commands_are_measured_by_bench_real_data():
    """The table's figures come from benchmarks/bench_real_data.py, which runs the same commands."""
    script, result = ROOT / "benchmarks" / "bench_real_data.py", ROOT / "benchmarks" / "results" / "real_data.json"
    if not script.exists() and not result.exists():
        pytest.skip("benchmarks/bench_real_data.py not written yet: the results table says 'not measured'")
    assert script.exists(), "real_data.json exists but benchmarks/bench_real_data.py does not"
    trains = [s for s in block(RESULTS).steps() if s.startswith("journey train")]
    if result.exists():
        runs = {r.get("command") for r in json.loads(result.read_text()).get("runs", [])}
        assert [t for t in trains if t not in runs] == [], "README results commands without a run in real_data.json"


def test_architecture_names_existing_files():
    b = block(ARCHITECTURE)
    files = re.findall(r"\b[\w/]+\.py\b", b.text)
    assert len(files) >= 10
    assert [f for f in files if not (ROOT / f).exists()] == []


# ---- tables ---------------------------------------------------------------------------------


def test_tables_match_the_json_results():
    proc = subprocess.run([sys.executable, "benchmarks/readme_tables.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr


def test_tables_render_real_data_runs_and_missing_files(tmp_path):
    """real_data.json as bench_real_data.py writes it gives one row per task; no JSON: 'not measured'."""
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    results = tmp_path / "results"
    results.mkdir()
    cmd = next(s for s in block(RESULTS).steps() if s.startswith("journey train --events cdnow"))
    run = {"dataset": "cdnow", "command": cmd, "tasks": {
        "churn": {"metric": "roc_auc", "value": 0.8381, "ci": [0.831, 0.845], "n_test": 23570, "other": {"pr_auc": 0.959},
                  "baselines": {"recency": {"value": 0.828, "ci": [0.82, 0.835]}, "logistic_regression": 0.839}},
        "advocacy": {"skipped": "no advocacy events"}}}
    (results / "real_data.json").write_text(json.dumps({"runs": [run]}))
    tool = [sys.executable, str(ROOT / "benchmarks" / "readme_tables.py"), "--readme", str(readme), "--results", str(results)]
    assert subprocess.run(tool + ["--check"], capture_output=True).returncode == 1  # differs from the committed tables
    subprocess.run(tool, check=True, capture_output=True)
    text = readme.read_text()
    assert subprocess.run(tool + ["--check"], capture_output=True).returncode == 0
    assert "| churn, no activity in 91 d (23,570) | ROC-AUC 0.838 [0.831, 0.845], PR-AUC 0.959 | recency 0.828 [0.820, 0.835]; logistic regression 0.839 | recency 0.828" in text
    assert "skipped: no advocacy events" in text
    assert "| Olist funnel, test from 2018-02-01 | all | not measured: real_data.json has no run of this command |" in text
    assert "| training, 200,000 customers (`bench_train.py`) | not measured" in text  # no train.json
    outside = text.split("<!-- results:begin -->")[0] + text.split("<!-- benchmarks:end -->")[1]
    assert outside == README.read_text().split("<!-- results:begin -->")[0] + README.read_text().split("<!-- benchmarks:end -->")[1]

"""A real distributed run: a Spark standalone master and one worker (1 core, 1 GB) on loopback,
started from pyspark's own ``bin/spark-class``. The driver and the executors are separate JVMs
and the Python workers are the executors' (``PYSPARK_PYTHON``), so the predictor, the playbook and
the scoring code reach them only the ways a cluster offers (broadcast, pickled functions, the
installed package, MLflow's model archive).

Checked against the local engine on the same events, row for row:
``journey score --engine spark --spark-master spark://...`` (its own driver process) writing a
folder of Parquet part files; ``score_dataframe`` on a DataFrame made in memory; and
``mlflow.pyfunc.spark_udf`` over nested customers (executors load the self-contained model).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers in tests/
from batch_fixtures import batch_events, batch_model, model_env  # noqa: E402,F401
from processes import free_port, stop_process_group  # noqa: E402
from test_spark_api import AS_OF, assert_rows_equal, spark_udf_scores  # noqa: E402

from journey_stage.core import io  # noqa: E402
from journey_stage.serving.batch import score_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXECUTOR_MEMORY = "768m"  # of the worker's 1 GB


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _get_json(url: str):
    import httpx

    try:
        return httpx.get(url, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.port, self.ui_port, self.worker_ui_port = free_port(), free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, SPARK_HOME=str(_spark_home()), SPARK_LOCAL_IP="127.0.0.1", SPARK_DAEMON_MEMORY="256m",
                        SPARK_LOCAL_DIRS=str(root / "local"), PYSPARK_PYTHON=sys.executable)
        self.env.pop("SPARK_CONF_DIR", None)

    def start(self, what: str, *args: str) -> None:
        cmd = [str(_spark_home() / "bin" / "spark-class"), f"org.apache.spark.deploy.{what}", *args]
        log = open(self.root / f"{what.rsplit('.', 1)[-1].lower()}.log", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root, start_new_session=True))

    def status(self) -> dict:
        return _get_json(f"http://127.0.0.1:{self.ui_port}/json/") or {}

    def completed_apps(self, n: int, timeout: float = 60) -> list[str]:
        """The names of the finished applications, once there are ``n`` (the master notes an end within seconds)."""
        deadline = time.time() + timeout
        while True:
            names = [a["name"] for a in self.status().get("completedapps", [])]
            if len(names) >= n or time.time() > deadline:
                return names
            time.sleep(1)

    def wait_for_worker(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            if any(w.get("state") == "ALIVE" for w in self.status().get("workers", [])):
                return
            time.sleep(1)
        logs = "\n".join(p.read_text()[-1500:] for p in self.root.glob("*.log"))
        raise RuntimeError(f"the standalone cluster did not start in {timeout:.0f} s:\n{logs}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process_group(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Master + one worker (1 core, 1 GB) on 127.0.0.1, stopped (process groups) at the end."""
    pytest.importorskip("pyspark")
    root = tmp_path_factory.mktemp("journey-spark-cluster")  # "journey" in the command lines: stop_process_group knows them
    (root / "local").mkdir()
    c = Cluster(root)
    try:
        c.start("master.Master", "--host", "127.0.0.1", "--port", str(c.port), "--webui-port", str(c.ui_port))
        c.start("worker.Worker", c.url, "--cores", "1", "--memory", "1g", "--host", "127.0.0.1",
                "--webui-port", str(c.worker_ui_port), "--work-dir", str(root / "work"))
        c.wait_for_worker()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def events_parquet(tmp_path_factory, batch_events) -> Path:
    path = tmp_path_factory.mktemp("cluster-in") / "events.parquet"
    io.write_table(batch_events.drop(columns=["true_stage"]), path, taxonomy="five_stage")
    return path


def _submit_cli(cluster: Cluster, model, events: Path, out: Path, tmp: Path) -> subprocess.CompletedProcess:
    """`journey score --engine spark` on the cluster, as a user runs it: its own driver process,
    settings from SPARK_CONF_DIR/spark-defaults.conf."""
    conf = tmp / "spark-conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text(
        f"spark.executor.memory {EXECUTOR_MEMORY}\nspark.driver.memory 1g\n"
        "spark.driver.host 127.0.0.1\nspark.driver.bindAddress 127.0.0.1\n")
    env = dict(cluster.env, SPARK_CONF_DIR=str(conf), JOURNEY_HOME=str(model.home))
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "journey_stage.cli", "score", "--events", str(events), "--out", str(out), "--engine", "spark",
           "--spark-master", cluster.url, "--model", model.uri]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env, timeout=900)


def _cluster_session(cluster: Cluster):
    from journey_stage.serving.spark import get_session

    conf = {"spark.executor.memory": EXECUTOR_MEMORY, "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    spark, own = get_session(cluster.url, conf)
    assert own and spark.sparkContext.master == cluster.url, "another Spark session is active in this process"
    return spark


@pytest.mark.slow
def test_standalone_cluster_scores_like_the_local_engine(cluster, model_env, batch_events, events_parquet, tmp_path):
    local = tmp_path / "local.parquet"
    c_local = score_file(events_parquet, local, predictor=model_env.predictor)
    ref = pd.read_parquet(local)

    # 1. the CLI, its own driver: a folder of part files written by the executor
    out = tmp_path / "scores.parquet"
    proc = _submit_cli(cluster, model_env, events_parquet, out, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"scored {c_local['scored']:,} customers, {c_local['ineligible']:,} skipped as ineligible, 0 rows rejected" in proc.stdout
    assert f"as of {c_local['as_of']}" in proc.stdout
    assert out.is_dir() and any(p.name.startswith("part-") for p in out.iterdir())
    pd.testing.assert_frame_equal(pd.read_parquet(out), ref)  # row for row, same types
    assert cluster.completed_apps(1) == ["journey-score"]  # it ran on the cluster
    assert list((cluster.root / "work").glob("app-*/*/stderr"))  # in an executor the worker started

    # 2. in this process, on the cluster: score_dataframe on events that never were a file, then spark_udf
    from journey_stage.serving.spark import score_dataframe

    raw = batch_events.drop(columns=["true_stage"])
    spark = _cluster_session(cluster)
    try:
        frame = spark.createDataFrame(raw)
        assert_rows_equal(score_dataframe(frame, model_env.uri).toPandas(), ref)
        nested = spark_udf_scores(spark, model_env.uri, frame, AS_OF)
    finally:
        spark.stop()
    at = tmp_path / "local-as-of.parquet"
    score_file(events_parquet, at, predictor=model_env.predictor, as_of=AS_OF)
    assert len(nested) == raw["customer_id"].nunique()
    assert_rows_equal(nested[nested["eligible"].astype(bool)].reset_index(drop=True), pd.read_parquet(at))
    assert cluster.completed_apps(2) == ["journey-score", "journey-score"]

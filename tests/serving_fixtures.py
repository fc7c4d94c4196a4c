"""Fixtures of the HTTP service tests: a small registered champion model and a real `journey serve`.

The model is trained once per test session (shared by pytest-xdist workers through a lock file)
in a subprocess, so the tests' own process keeps its MLflow and environment settings.
Import the fixtures into a test module with ``from serving_fixtures import service_model``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from processes import descendants, free_port, stop_process_group  # noqa: F401 - tests import them from here

ROOT = Path(__file__).resolve().parents[1]
MODEL_URI = "models:/journey-stage@champion"
SERVICE_ENTRY = "journey_stage.serving.service:JourneyService"
AS_OF = "2025-12-01T00:00:00+00:00"  # inside the synthetic year: histories before and after it


@dataclass(frozen=True)
class ServiceModel:
    home: Path  # JOURNEY_HOME with the SQLite MLflow store
    events_path: Path  # canonical events the model was trained on (parquet)
    model_uri: str = MODEL_URI

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    def env(self) -> dict[str, str]:
        """Environment of a process that should see this store (and only it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "MLFLOW_", "BENTOML_"))}
        env["JOURNEY_HOME"] = str(self.home)
        return env

    def load_predictor(self):
        """The registered champion as a Python predictor (what the service loads)."""
        from journey_stage.training import tracking
        from journey_stage.model import registry

        saved = {k: os.environ.get(k) for k in ("JOURNEY_HOME", "MLFLOW_TRACKING_URI")}
        os.environ["JOURNEY_HOME"] = str(self.home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        try:
            return registry.load_predictor(self.model_uri)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def build_model(home: Path) -> dict:
    """Generate 800 customers, train fast settings, log, register and promote to champion."""
    os.environ["JOURNEY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from journey_stage.core.events import canonical_events
    from journey_stage.synthetic.generate import generate_events
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.training import gate, tracking
    from journey_stage.model import registry
    from journey_stage.training.pipeline import train_and_evaluate

    tax = load_taxonomy("five_stage")
    events = canonical_events(generate_events(800, seed=3), "generated", tax).events
    # One simulated year is too short for a purged 90-day churn split (training label windows
    # ending before the validation cutoffs leave no churners); these tests need every task.
    settings = Settings(n_estimators=30, bootstrap_rounds=0, max_train_rows=20000, purge_validation=False)
    outcome = train_and_evaluate(events, tax, settings)
    report_dir = home / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(outcome.report, default=str))
    registry.configure()
    logged = tracking.log_training_run(outcome, events, settings, report_dir, {}, settings.model_name)
    tracking.record_gate(logged["run_id"], gate.challenger_scores(outcome.report), None, None)
    decision = tracking.promote(settings.model_name)
    events.to_parquet(home / "events.parquet", index=False)
    return {"version": logged["version"], "promoted": decision["promoted"]}


def _shared_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # under pytest-xdist every worker has its own basetemp inside one shared parent
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "journey-service-model"


@pytest.fixture(scope="session")
def service_model(tmp_path_factory) -> ServiceModel:
    home = _shared_dir(tmp_path_factory)
    home.mkdir(parents=True, exist_ok=True)
    done = home / "done.json"
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                proc = subprocess.run(
                    [sys.executable, __file__, str(home)], cwd=ROOT, env=ServiceModel(home, home / "events.parquet").env(),
                    capture_output=True, text=True, timeout=1800,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"building the test model failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                done.write_text(proc.stdout.strip().splitlines()[-1])
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return ServiceModel(home=home, events_path=home / "events.parquet")


# ---- a real `journey serve` --------------------------------------------------------------------

@dataclass
class RunningService:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-5000:]
        except OSError:
            return ""


@contextlib.contextmanager
def run_service(model: ServiceModel, workdir: Path, extra_env: dict[str, str] | None = None,
                wait_ready: bool = True, timeout: float = 420, model_uri: str | None = None,
                entry: str = "journey") -> Iterator[RunningService]:
    """Start `journey serve` (a real `bentoml serve`) on a free loopback port; stop it afterwards.
    ``entry="bentoml"``: `bentoml serve journey_stage.serving.service:JourneyService` itself, the
    model URI in ``JOURNEY_MODEL_URI`` (nothing resolved by the CLI first)."""
    import httpx

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = model.env() | {"BENTOML_HOME": str(workdir / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"} | (extra_env or {})
    log_path = workdir / f"serve-{port}.log"
    log = open(log_path, "w")
    if entry == "bentoml":
        env["JOURNEY_MODEL_URI"] = model_uri or model.model_uri
        cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE_ENTRY, "--host", "127.0.0.1", "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "journey_stage.cli", "serve", "--model", model_uri or model.model_uri, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    svc = RunningService(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.time() + timeout
        probe = "/readyz" if wait_ready else "/livez"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"journey serve exited with {proc.returncode}:\n{svc.log()}")
            try:
                if httpx.get(svc.url + probe, timeout=5).status_code == 200:
                    break
                failed = load_failure(svc.url, env.get("JOURNEY_API_TOKEN"))
                if failed:
                    raise RuntimeError(f"journey serve could not load its model: {failed}\n{svc.log()}")
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"journey serve not {'ready' if wait_ready else 'alive'} after {timeout:.0f}s:\n{svc.log()}")
            time.sleep(1)
        yield svc
    finally:
        stop_process_group(proc)
        log.close()


def load_failure(url: str, token: str | None = None) -> str | None:
    """The service's reason for not being ready when loading the model failed (None otherwise)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(url + "/metadata", headers=headers, timeout=5)
    if r.status_code == 503 and r.headers.get("content-type", "").startswith("application/json"):
        hint = r.json().get("hint") or ""
        if hint and not hint.startswith("retry when"):
            return hint
    return None


def worker_pids(proc: subprocess.Popen) -> list[int]:
    """The service worker processes below a running `bentoml serve` / `journey serve`."""
    out = []
    for pid in descendants(proc.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"_bentoml_impl.worker.service" in fh.read():
                    out.append(pid)
        except OSError:
            pass
    return sorted(out)


# ---- request bodies and server-side counts ---------------------------------------------------

def payload_of(events: pd.DataFrame, ids: list[str]) -> list[dict]:
    """Request customers (in the order of ``ids``) from canonical events, events shuffled."""
    out = []
    rng = random.Random(0)
    for cid in ids:
        rows = events[events["customer_id"] == cid]
        evs = [
            {
                "timestamp": ts.isoformat(),
                "event_type": et,
                "channel": None if pd.isna(ch) else ch,
                "value": None if pd.isna(v) else float(v),
                "campaign": None if pd.isna(cp) else cp,
            }
            for ts, et, ch, v, cp in zip(rows["timestamp"], rows["event_type"], rows["channel"], rows["value"], rows["campaign"])
        ]
        rng.shuffle(evs)
        out.append({"customer_id": cid, "events": evs})
    return out


def assert_close(http, py, path="$"):
    if isinstance(py, float) or isinstance(http, float):
        assert http is not None and py is not None, f"{path}: {http!r} != {py!r}"
        assert math.isclose(http, py, rel_tol=0, abs_tol=1e-9), f"{path}: {http!r} != {py!r}"
    elif isinstance(py, dict):
        assert isinstance(http, dict) and set(http) == set(py), f"{path}: keys {sorted(http)} != {sorted(py)}"
        for k in py:
            assert_close(http[k], py[k], f"{path}.{k}")
    elif isinstance(py, list):
        assert isinstance(http, list) and len(http) == len(py), f"{path}: {http!r} != {py!r}"
        for i, (a, b) in enumerate(zip(http, py)):
            assert_close(a, b, f"{path}[{i}]")
    else:
        assert http == py, f"{path}: {http!r} != {py!r}"


def history_body(model: ServiceModel, n_events: int = 200, customer_id: str = "load-1") -> bytes:
    """A ``/predict`` body: one customer with ``n_events`` events (the longest synthetic history,
    topped up with other customers' events), as of :data:`AS_OF` (the benchmark's request shape)."""
    import pandas as pd

    events = pd.read_parquet(model.events_path)
    longest = events["customer_id"].value_counts().index[0]
    rows = pd.concat([events[events["customer_id"] == longest], events.sample(n_events, random_state=0)]).head(n_events)
    evs = [{"timestamp": ts.isoformat(), "event_type": et} for ts, et in zip(rows["timestamp"], rows["event_type"])]
    return json.dumps({"customers": [{"customer_id": customer_id, "events": evs}], "as_of": AS_OF}).encode()


def bad_timestamps_body(customers: int = 12, events: int = 5000, unknown_types: bool = False) -> bytes:
    """A heavy invalid ``/predict`` body (3.4 MB by default): every timestamp is bad, so every
    event is one problem (60,000 by default) found by the general validation path.
    ``unknown_types``: every event type unknown too, two problems per event (20 customers: 4.7 MB,
    200,000 problems, seconds of validation)."""
    def event(j: int) -> dict:
        return {"timestamp": f"b{j}", "event_type": f"t{j}"} if unknown_types else {"timestamp": f"bad-{j}", "event_type": "product_view"}

    body = {"customers": [{"customer_id": f"c{i}", "events": [event(j) for j in range(events)]} for i in range(customers)]}
    return json.dumps(body).encode()


def predict_status_counts(url: str, token: str | None = None) -> dict[int, int]:
    """How many ``POST /predict`` answers the service has sent, by status code (its ``/metrics``,
    summed over workers): ``{200: scored, 429: shed, ...}``."""
    import re

    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    text = httpx.get(url + "/metrics", headers=headers, timeout=60).text
    counts: dict[int, int] = {}
    for labels, value in re.findall(r'^\w*request_total\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
        if 'endpoint="/predict"' in labels:
            code = int(re.search(r'http_response_code="(\d+)"', labels).group(1))
            counts[code] = counts.get(code, 0) + int(float(value))
    return counts


# ---- a private copy of the store, for tests that move the champion alias -----------------------

_PROMOTE = """
import sys
from mlflow.tracking import MlflowClient
db, name, alias = sys.argv[1:4]
client = MlflowClient(tracking_uri=db, registry_uri=db)
current = client.get_model_version_by_alias(name, alias)
new = client.create_model_version(name, source=current.source, run_id=current.run_id)
client.set_registered_model_alias(name, alias, new.version)
print(new.version)
"""


def private_store(model: ServiceModel, home: Path) -> ServiceModel:
    """A copy of ``model``'s registry (the SQLite store; the artifacts it names stay where they are,
    read only) that a test may change without touching the session's shared store."""
    import shutil

    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model.home / "mlflow.db", home / "mlflow.db")
    return ServiceModel(home=home, events_path=model.events_path, model_uri=model.model_uri)


def promote_new_version(model: ServiceModel, name: str = "journey-stage", alias: str = "champion") -> str:
    """Register the champion's artifacts again as a new version of ``name`` and move ``alias`` to it
    (what promoting a retrained model does to the registry); the new version number."""
    env = model.env() | {"MLFLOW_TRACKING_URI": model.tracking_uri}  # MLflow looks the logged model up there
    proc = subprocess.run([sys.executable, "-c", _PROMOTE, model.tracking_uri, name, alias], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"promoting a new version failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


if __name__ == "__main__":  # the session fixture runs this in a subprocess
    sys.path.insert(0, str(ROOT))
    print(json.dumps(build_model(Path(sys.argv[1]))))

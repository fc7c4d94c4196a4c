"""A Bento that carries its model (issue 15): `journey bento` imports the registered version into
the BentoML model store and builds a Bento tagged with the model version; `bentoml serve <tag>`
answers with MLFLOW_TRACKING_URI pointing nowhere and no JOURNEY_HOME, and its answers equal the
champion's own scoring in Python."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from processes import free_port, stop_process_group
from serving_fixtures import AS_OF, service_model  # noqa: F401 (fixture)
from test_service import assert_close, chosen, events, payload_of, predictor, python_records  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bento(service_model, tmp_path_factory):  # noqa: F811
    bentoml_home = tmp_path_factory.mktemp("bentoml-home")
    env = service_model.env() | {"BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run([sys.executable, "-m", "journey_stage.cli", "bento", "--model", service_model.model_uri],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tag = re.search(r"^built Bento (\S+)$", proc.stdout, re.M).group(1)
    return tag, bentoml_home


def test_the_tag_names_the_model_version(bento, predictor):  # noqa: F811
    tag, _ = bento
    assert tag == f"journey_service:model-journey-stage-v{predictor.info['version']}"


def test_the_bento_serves_without_a_registry_and_answers_like_the_champion(bento, events, chosen, predictor, tmp_path):  # noqa: F811
    tag, bentoml_home = bento
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "MLFLOW_", "BENTOML_"))}
    env |= {"BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}", "JOURNEY_HOME": str(tmp_path / "no-such-home")}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port), "--host", "127.0.0.1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise AssertionError("the Bento did not become ready in 180 s")
        meta = httpx.get(url + "/metadata", timeout=30).json()
        assert meta["model"]["version"] == predictor.info["version"] and meta["model"]["name"] == "journey-stage"
        r = httpx.post(url + "/predict", json={"customers": payload_of(events, chosen["ids"]), "as_of": AS_OF}, timeout=120)
        assert r.status_code == 200, r.text
        expected = python_records(predictor, events, chosen["ids"], AS_OF)
        for p in r.json()["predictions"]:
            p = dict(p)
            p.pop("warnings")
            assert p["model"].pop("alias") is None  # an embedded version, no alias
            assert_close(p, expected[p["customer_id"]], p["customer_id"])
        assert not (tmp_path / "no-such-home").exists()
    finally:
        stop_process_group(proc)

"""`pip install .` installs exactly one import package, ``journey_stage``, plus the ``journey``
script; a user's own ``features.py``, ``training/`` and ``serving/`` next to their notebook shadow
nothing of ours; a model written before the namespace gives one line naming the version.

The wheel is built from this checkout and installed (``--no-deps``) into a fresh virtual
environment; the dependencies come from this test run's environment through a ``.pth`` line, so
the test does not download the whole stack again but runs the real, non-editable install."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# what a data scientist's working folder may hold; importing any of it must never happen
SHADOWS = {
    "features.py": "raise ImportError('the user features.py was imported')\n",
    "training/__init__.py": "raise ImportError('the user training/ was imported')\n",
    "serving/__init__.py": "raise ImportError('the user serving/ was imported')\n",
    "journey.py": "raise ImportError('the user journey.py was imported')\n",
    "model/__init__.py": "raise ImportError('the user model/ was imported')\n",
    "core/__init__.py": "raise ImportError('the user core/ was imported')\n",
}

USE_THE_PRODUCT = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    import journey_stage
    names = [m.name for m in pkgutil.walk_packages(journey_stage.__path__, "journey_stage.")]
    files = {}
    for name in names:
        if name.endswith("pyfunc_model"):  # MLflow's models-from-code file: set_model() on import
            continue
        files[name] = importlib.import_module(name).__file__
    from journey_stage.synthetic.generate import generate_events
    from journey_stage.core.events import canonical_events
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.model.scoring import score_events
    from journey_stage.training.pipeline import train_and_evaluate
    tax = load_taxonomy("five_stage")
    events = canonical_events(generate_events(300, seed=5), "generated", tax).events
    outcome = train_and_evaluate(events, tax, Settings(n_estimators=10, bootstrap_rounds=0, purge_validation=False))
    scores = score_events(outcome.predictor, events, None)
    print(json.dumps({"files": files, "scored": len(scores), "sys_path0": sys.path[0]}))
""")


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fresh-install")
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("journey_stage-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True, timeout=600)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    return env_dir, site


def test_one_top_level_package_and_the_journey_script(fresh_install):
    env_dir, site = fresh_install
    before_ours = {"pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth", "__pycache__"}
    ours = sorted(p.name for p in site.iterdir() if p.name not in before_ours and not p.name.endswith(".dist-info"))
    assert ours == ["journey_stage"]
    assert (env_dir / "bin" / "journey").exists()
    top = (next(site.glob("journey_stage-*.dist-info")) / "top_level.txt")
    if top.exists():
        assert top.read_text().split() == ["journey_stage"]


def test_a_working_folder_with_its_own_features_and_training_shadows_nothing(fresh_install, tmp_path):
    env_dir, site = fresh_install
    # the dependencies of this test run, after the fresh install's own site-packages
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "my-notebooks"
    for rel, text in SHADOWS.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    # `python -c` puts the working folder first on sys.path, as notebooks and scripts do
    proc = subprocess.run([str(env_dir / "bin" / "python"), "-c", USE_THE_PRODUCT], cwd=work,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["sys_path0"] in ("", str(work))
    assert len(result["files"]) > 30
    outside = {n: f for n, f in result["files"].items() if not f.startswith(str(site))}
    assert outside == {}
    assert result["scored"] > 100
    help_run = subprocess.run([str(env_dir / "bin" / "journey"), "--help"], cwd=work, capture_output=True, text=True, timeout=300)
    assert help_run.returncode == 0 and "score" in help_run.stdout


def test_the_shadow_folder_would_break_a_bare_import(tmp_path):
    """The shadows are real: the bare names the old layout installed resolve to the user's files."""
    for rel, text in SHADOWS.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    proc = subprocess.run([sys.executable, "-c", "import features"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "the user features.py was imported" in proc.stderr

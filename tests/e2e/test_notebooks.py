"""The notebooks in notebooks/ run top to bottom without errors (nbclient, kernel "python3").

Each notebook is executed in memory (the saved .ipynb is not modified) from a temporary working
directory, with JOURNEY_HOME pointing to a temporary folder and MLFLOW_TRACKING_URI unset, so no
MLflow store or tracking server outside the test is touched.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("ipykernel", reason="the notebooks run on an ipykernel kernel")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 300
KERNEL = "python3"

pytestmark = pytest.mark.slow


def _kernel_available() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return False
    return True


@pytest.mark.parametrize("name", ["01_explore_journeys.ipynb", "02_retrain_and_compare.ipynb"])
def test_notebook_runs_without_errors(name, tmp_path, monkeypatch):
    if not _kernel_available():
        pytest.skip(f"no Jupyter kernel named {KERNEL!r}; run `python -m ipykernel install --user --name {KERNEL}`")
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    workdir = tmp_path / "work"
    workdir.mkdir()
    # the kernel process inherits this environment
    monkeypatch.setenv("JOURNEY_HOME", str(tmp_path / "journey-home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")

    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(workdir)}},
    )
    t0 = time.time()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:  # names the cell and the traceback
        pytest.fail(f"{name}: a cell failed:\n{exc}", pytrace=False)
    elapsed = time.time() - t0

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells, f"{name} has no code cells"
    errors = [o for c in code_cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: error outputs {[(e['ename'], e['evalue']) for e in errors]}"
    not_run = [i for i, c in enumerate(code_cells) if c.get("execution_count") is None]
    assert not not_run, f"{name}: code cells {not_run} did not run"
    # the final summary cell produced a result
    assert code_cells[-1].get("outputs"), f"{name}: the summary cell produced no output"
    print(f"{name}: executed in {elapsed:.0f}s")

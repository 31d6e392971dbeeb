"""Every notebook runs top to bottom, headless, in a small configuration."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "notebooks", "*.ipynb")))


def test_there_are_notebooks_and_they_are_committed_clean():
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tiny_shapes, trained_run, scst_run, monkeypatch):
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATA", tiny_shapes)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_RUN", trained_run)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_SCST_RUN", scst_run["run_dir"])
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    client.execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") in ("display_data", "stream", "execute_result") for o in outputs)

"""Every notebook runs top to bottom, headless, in a temporary folder, and its figures show."""

import glob
import os
import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "notebooks", "*.ipynb")))
# Figures each notebook draws (image/png outputs), as cells a person would look at.
FIGURES = {"01_explore_data.ipynb": 2, "02_train_and_evaluate.ipynb": 1, "03_attention_maps.ipynb": 2,
           "04_self_critical.ipynb": 2}


def test_there_are_notebooks_and_they_are_committed_clean():
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path


def execute(path, folder):
    """Runs a copy of the notebook in `folder` (a temporary folder, removed by pytest), as Jupyter would:
    its default inline backend, so figures come out as images."""
    copy = os.path.join(folder, os.path.basename(path))
    shutil.copy(path, copy)
    notebook = nbformat.read(copy, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return outputs


def images(outputs):
    return [o for o in outputs if o.get("output_type") in ("display_data", "execute_result")
            and "image/png" in o.get("data", {})]


def headless(monkeypatch):
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend: figures must show as images


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_and_draws_its_figures(path, tiny_shapes, trained_run, scst_run, monkeypatch, tmp_path):
    headless(monkeypatch)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATA", tiny_shapes)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_RUN", trained_run)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_SCST_RUN", scst_run["run_dir"])
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_OUT", str(tmp_path / "notebook-run"))
    outputs = execute(path, str(tmp_path))
    assert len(images(outputs)) >= FIGURES[os.path.basename(path)], os.path.basename(path)
    # Nothing written beside the notebook or into the shared runs; notebook 02's run went where it was told.
    assert not [name for name in os.listdir(os.path.dirname(path)) if not name.endswith(".ipynb")]
    if path.endswith("02_train_and_evaluate.ipynb"):
        assert os.path.isfile(tmp_path / "notebook-run" / "model.keras")


@pytest.mark.slow
def test_data_exploration_reads_flickr8k_as_users_have_it(small_shapes, tmp_path, monkeypatch):
    from captioner.data.synthetic import flickr_tree

    root = str(tmp_path / "flickr8k")
    flickr_tree.write(root, small_shapes, "flickr8k", "csv", sizes=(40, 8, 8))
    headless(monkeypatch)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATASET", "flickr8k")
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATA", root)
    outputs = execute([p for p in NOTEBOOKS if p.endswith("01_explore_data.ipynb")][0], str(tmp_path))
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "{'train': 46, 'val': 5, 'test': 5} images per split" in printed
    assert re.search(r"\d+ distinct words, mean caption length [\d.]+", printed)
    assert len(images(outputs)) >= 2

"""Every notebook runs top to bottom, headless, in a small configuration."""

import glob
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "notebooks", "*.ipynb")))


def test_there_are_notebooks_and_they_are_committed_clean():
    assert len(NOTEBOOKS) >= 4
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path


def execute(path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    client.execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") in ("display_data", "stream", "execute_result") for o in outputs)
    return outputs


def headless(monkeypatch):
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tiny_shapes, trained_run, scst_run, monkeypatch):
    headless(monkeypatch)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATA", tiny_shapes)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_RUN", trained_run)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_SCST_RUN", scst_run["run_dir"])
    execute(path)


@pytest.mark.slow
def test_data_exploration_reads_flickr8k_as_users_have_it(small_shapes, tmp_path, monkeypatch):
    from captioner.data.synthetic import flickr_tree

    root = str(tmp_path / "flickr8k")
    flickr_tree.write(root, small_shapes, "flickr8k", "csv", sizes=(40, 8, 8))
    headless(monkeypatch)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATASET", "flickr8k")
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATA", root)
    outputs = execute([p for p in NOTEBOOKS if p.endswith("01_explore_data.ipynb")][0])
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "{'train': 46, 'val': 5, 'test': 5} images per split" in printed
    assert re.search(r"\d+ distinct words, mean caption length [\d.]+", printed)

"""The README's pictures made again from a run: the attention figure and learning curves, the demo and report
screenshots."""

import os
import shutil

import pytest
from PIL import Image

from captioner.inference import pictures
from conftest import skip_or_fail


def test_attention_and_learning_curves_from_a_run(quick_run, tmp_path, capsys):
    out = tmp_path / "images"
    assert pictures.main([quick_run, str(out), "--skip-demo"]) == 0
    written = capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["attention.png", "learning_curves.png"]
    for name in ("attention.png", "learning_curves.png"):
        assert f"Written {out / name}" in written
        width, height = Image.open(out / name).size
        assert width > 200 and height > 100  # a drawn figure, not an empty canvas
        assert len(set(Image.open(out / name).convert("L").getdata())) > 10


def test_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pictures.main([str(tmp_path / "no-run"), str(tmp_path / "images")])
    assert exit_info.value.code == 2 and "no-run" in capsys.readouterr().err
    assert not (tmp_path / "images").exists()


@pytest.mark.slow
def test_the_reports_first_screen(quick_run, tmp_path, request):
    """With Chromium (as CI installs it): the report made and its first screen shot as a PNG. (The demo's
    screenshot drives the same Chromium through `demo.caption_example`, which tests/test_demo.py runs.)"""
    from captioner.inference import demo

    if not os.path.exists(demo.CHROMIUM):
        skip_or_fail(request, f"no Chromium at {demo.CHROMIUM}: apt-get install -y chromium chromium-driver")
    run = str(tmp_path / "run")
    shutil.copytree(quick_run, run)  # the report is written into the run folder
    path = pictures.report_screenshot(run, str(tmp_path / "report.png"))
    assert Image.open(path).size == (1360, 900) and os.path.exists(os.path.join(run, "report.html"))
    assert len(set(Image.open(path).convert("L").getdata())) > 10

"""The run report: one self-contained HTML page, offline, whose numbers are the evaluation's."""

import json
import os
import re
import shutil

import pytest

from captioner import evaluate, report
from captioner.evaluation import coco_eval


def test_the_report_holds_every_section_fetches_nothing_and_repeats_the_evaluations_numbers(quick_run, tmp_path):
    run = str(tmp_path / "run")
    shutil.copytree(quick_run, run)
    assert report.main([run, "--examples", "6", "--no-java", "--quiet"]) == 0
    path = os.path.join(run, "report.html")
    page = open(path, encoding="utf-8").read()
    assert os.path.getsize(path) < 2_000_000
    for heading in ("The run", "Learning curves", "Metrics", "Decoding-default search", "Genericness", "Examples",
                    "Best (highest per-image CIDEr-D)", "Worst (lowest per-image CIDEr-D)", "Random"):
        assert f">{heading}<" in page, heading
    # Self-contained: every image inline, nothing fetched from anywhere.
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r"https?://", page) and "url(" not in page and "@import" not in page
    assert page.count('class="card"') == 6 and page.count('alt="attention of each word"') == 6
    # The numbers are those of the evaluation folder it was built from.
    folder = [name for name in os.listdir(run) if name.startswith("eval-test-")]
    assert len(folder) == 1
    metrics = json.load(open(os.path.join(run, folder[0], "metrics.json")))
    for name in ("coco_bleu_4", "coco_cider_d", "coco_rouge_l"):
        assert f"<td>{coco_eval.LABELS[name]}</td><td>{metrics[name]:.4f}</td>" in page
    # CHAIR-i is undefined (n/a) when the captions mention no object, as a model trained six steps may write.
    chair_i = "n/a" if metrics["chair_i"] is None else f"{metrics['chair_i']:.4f}"
    assert f"<td>CHAIR-i</td><td>{chair_i}</td><td>{metrics['chair_hallucinated_mentions']} of " in page
    assert "0-1; CIDEr-D unbounded" in page and "Tokenizer of the COCO metrics: python (no Java" in page


@pytest.mark.slow
def test_evaluate_writes_the_report_beside_its_evaluation(quick_run, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert evaluate.main([quick_run, "--no-java", "--quiet", "--output-dir", str(out), "--report"]) == 0
    page = open(out / "report.html", encoding="utf-8").read()
    metrics = json.load(open(out / "metrics.json"))
    assert f"<td>CIDEr-D</td><td>{metrics['coco_cider_d']:.4f}</td>" in page and "report:" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(quick_run, "report.html"))  # nothing written into the run


@pytest.mark.slow
def test_the_report_shows_the_captions_its_evaluation_scored(quick_run, tmp_path):
    """`evaluate --max-length 3 --report`: the galleries' captions are the evaluated ones (at most 3 words), and
    metrics.json says how the split was read and decoded."""
    out = tmp_path / "evaluation"
    assert evaluate.main([quick_run, "--no-java", "--quiet", "--output-dir", str(out), "--report",
                          "--max-length", "3"]) == 0
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["max_length"] == 3 and metrics["dataset"] == "shapes"
    page = open(out / "report.html", encoding="utf-8").read()
    captions = re.findall(r'<p class="caption">([^<]*)</p>', page)
    assert captions and all(len(c.split()) <= 3 or c == "(empty)" for c in captions), captions

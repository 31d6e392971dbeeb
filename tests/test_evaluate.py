"""Evaluation: COCO metrics as pycocoevalcap computes them, Shapes figures, and the evaluate command."""

import dataclasses
import json
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from captioner import evaluate
from conftest import exit_status
from captioner.evaluation import coco_eval
from captioner.evaluation import scoring
from captioner.evaluation import metrics
from captioner.data import coco

# Skipped without Java in the fast tier, failed under --run-slow (conftest.needs_java).
needs_java = pytest.mark.usefixtures("needs_java")


def figures_afresh(references, predictions):
    """The figures of `predictions` (a COCO results list) against `references` (image_id -> captions), computed
    here from those two alone: pycocoevalcap's BLEU-1..4, ROUGE-L and CIDEr-D on the caption tokenizer's words
    (the tokenisation without Java), and nltk's corpus BLEU. An empty caption is scored as `<empty>`."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    captions = {p["image_id"]: p["caption"] or coco_eval.EMPTY for p in predictions}
    ids = sorted(captions)
    assert sorted(references) == ids
    tokens = iter(metrics.words_of([r for i in ids for r in references[i]] + [captions[i] for i in ids]))
    gts = {i: [" ".join(next(tokens)) for _ in references[i]] for i in ids}
    res = {i: [" ".join(next(tokens))] for i in ids}
    figures = dict(zip([f"coco_bleu_{n}" for n in range(1, 5)], Bleu(4).compute_score(gts, res, verbose=0)[0]))
    figures["coco_rouge_l"] = Rouge().compute_score(gts, res)[0]
    figures["coco_cider_d"] = Cider().compute_score(gts, res)[0]
    figures.update(metrics.nltk_corpus_bleu([references[i] for i in ids], [captions[i] for i in ids]))
    return figures


def assert_figures_afresh(saved, references, predictions):
    """The saved figures are those of the written predictions and the references (not merely in 0..1)."""
    afresh = figures_afresh(references, predictions)
    assert afresh["coco_bleu_1"] > 0 and afresh["nltk_bleu_1"] > 0  # not a comparison of zeros
    for name, value in afresh.items():
        assert saved[name] == pytest.approx(value, abs=1e-9), name


def shapes_references(root, split="test"):
    return scoring.references_of(coco.read_split(root, split))


def perturbed(references):
    """Predictions that are partly right: a reference with a word changed or dropped, or a wrong caption."""
    predictions = {}
    for k, (image_id, refs) in enumerate(sorted(references.items())):
        words = refs[k % len(refs)].split()
        if k % 3 == 0:
            words = words[:-2]
        elif k % 3 == 1:
            words[1] = "orange" if words[1] != "orange" else "blue"
        predictions[image_id] = " ".join(words) + ("." if k % 4 == 0 else "")
    return predictions


@pytest.mark.slow
@needs_java
def test_metrics_equal_coco_eval_cap(small_shapes, monkeypatch):
    from pycocoevalcap import eval as coco_eval_cap
    from pycocotools.coco import COCO

    class NoSpice:  # SPICE needs Java 8 and a model download; it is not one of our metrics
        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

        def method(self):
            return "SPICE"

    monkeypatch.setattr(coco_eval_cap, "Spice", NoSpice)
    references = shapes_references(small_shapes)
    predictions = perturbed(references)
    ours, per_image = coco_eval.score(references, predictions, use_java=True)

    ground_truth = COCO(os.path.join(small_shapes, "annotations", "captions_test.json"))
    results = ground_truth.loadRes([{"image_id": i, "caption": c} for i, c in predictions.items()])
    official = coco_eval_cap.COCOEvalCap(ground_truth, results)
    official.params["image_id"] = results.getImgIds()
    official.evaluate()
    names = {"Bleu_1": "coco_bleu_1", "Bleu_2": "coco_bleu_2", "Bleu_3": "coco_bleu_3", "Bleu_4": "coco_bleu_4",
             "METEOR": "coco_meteor", "ROUGE_L": "coco_rouge_l", "CIDEr": "coco_cider_d"}
    for theirs, mine in names.items():
        assert abs(official.eval[theirs] - ours[mine]) < 1e-6, (theirs, official.eval[theirs], ours[mine])
        for image_id, scores in official.imgToEval.items():
            assert abs(scores[theirs] - per_image[image_id][mine]) < 1e-6
    assert 0.1 < ours["coco_bleu_4"] < 0.99 and ours["tokenizer"].startswith("PTB")


def test_bleu_against_hand_computed_values():
    references = {1: ["a red circle"], 2: ["a blue square on the left"]}
    # Image 1: "a red square": unigram precision 2/3, bigram 1/2, same length as the reference.
    one = {1: "a red square"}
    scores, _ = coco_eval.score({1: references[1]}, one, use_java=False)
    nltk = metrics.nltk_corpus_bleu([references[1]], [one[1]])
    for value in (scores["coco_bleu_1"], nltk["nltk_bleu_1"]):
        assert value == pytest.approx(2 / 3, abs=1e-6)
    for value in (scores["coco_bleu_2"], nltk["nltk_bleu_2"]):
        assert value == pytest.approx(math.sqrt(2 / 3 * 1 / 2), abs=1e-6)
    # Image 2: "a blue square", every n-gram right but 3 words against 6: brevity penalty exp(1 - 6/3).
    two = {2: "a blue square"}
    scores, _ = coco_eval.score({2: references[2]}, two, use_java=False)
    assert scores["coco_bleu_1"] == pytest.approx(math.exp(1 - 6 / 3), abs=1e-6)
    assert scores["coco_bleu_3"] == pytest.approx(math.exp(1 - 6 / 3), abs=1e-6)
    # Corpus BLEU pools counts over images: unigrams (2 + 3) / (3 + 3), lengths 6 against 3 + 6.
    both, _ = coco_eval.score(references, {**one, **two}, use_java=False)
    assert both["coco_bleu_1"] == pytest.approx(5 / 6 * math.exp(1 - 9 / 6), abs=1e-6)
    assert metrics.nltk_corpus_bleu([references[1], references[2]], [one[1], two[2]])["nltk_bleu_1"] == \
        pytest.approx(5 / 6 * math.exp(1 - 9 / 6), abs=1e-6)


def test_without_java_metrics_are_labelled_and_meteor_left_out(small_shapes, capsys, monkeypatch):
    references = shapes_references(small_shapes)
    scores, _ = coco_eval.score(references, perturbed(references), use_java=False)
    assert "coco_meteor" not in scores and scores["tokenizer"].startswith("python")
    assert "Java was not found" not in capsys.readouterr().err  # not used as asked: nothing was looked for
    monkeypatch.setattr(coco_eval, "java_available", lambda: False)
    scores, _ = coco_eval.score(references, perturbed(references))
    assert "coco_meteor" not in scores and "Java was not found" in capsys.readouterr().err
    table = scoring.format_table({**scores, **metrics.nltk_corpus_bleu([["a"]], ["a"])})
    assert "METEOR     n/a (needs Java)" in table


def test_results_file_checks():
    references = {1: ["a red circle"], 2: ["a blue square"]}
    assert coco_eval.check_results([{"image_id": 1, "caption": "a red circle"}], references, "r.json") == \
        {1: "a red circle"}
    with pytest.raises(coco.DatasetError, match=r"r.json: 1 results name image ids .* \[7\]"):
        coco_eval.check_results([{"image_id": 7, "caption": "x"}], references, "r.json")
    # An empty caption is scored as evaluate scores a model's: a results file evaluate wrote scores again.
    assert coco_eval.check_results([{"image_id": 1, "caption": "  "}], references, "r.json") == {1: coco_eval.EMPTY}
    with pytest.raises(coco.DatasetError, match="not text"):
        coco_eval.check_results([{"image_id": 1, "caption": 7}], references, "r.json")
    with pytest.raises(coco.DatasetError, match="more than one result"):
        coco_eval.check_results([{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}], references,
                                "r.json")
    with pytest.raises(coco.DatasetError, match="list of"):
        coco_eval.check_results({"image_id": 1}, references, "r.json")


def test_object_f1_counts_plurals_as_two():
    truth = [[("red", "circle"), ("red", "circle")], [("blue", "square"), ("green", "cross")]]
    result = metrics.object_f1(["two red circles", "a blue square on the left"], truth)
    assert result["object_precision"] == 1.0 and result["object_recall"] == 0.75
    assert result["object_f1"] == pytest.approx(2 * 0.75 / 1.75)
    wrong = metrics.object_f1(["a small orange diamond"], [[("red", "circle")]])
    assert wrong["object_f1"] == 0.0


def test_attention_pointing_on_hand_made_attention():
    # A 2 x 2 grid over a 64-pixel image; the red circle fills the top-left region exactly.
    objects = [[{"colour": "red", "shape": "circle", "bbox": [0, 0, 32, 32]},
                {"colour": "blue", "shape": "square", "bbox": [40, 40, 16, 16]}]]
    attention = np.zeros((6, 4))
    attention[1] = [1, 0, 0, 0]  # "red": all on the circle's region
    attention[2] = [0.5, 0.5, 0, 0]  # "circle": half on it
    attention[4] = [0, 0, 0, 1]  # "blue": on the square's region, a quarter of which is the square
    attention[5] = [0, 0, 0, 1]
    result = metrics.attention_pointing(["a red circle and blue square"], [attention], objects, (2, 2), [(64, 64)])
    assert result["pointing_words"] == 4
    assert result["attention_pointing"] == pytest.approx((1 + 0.5 + 0.25 + 0.25) / 4)
    overlap = metrics.region_box_overlap([[40, 40, 16, 16]], (2, 2), 64, 64)
    np.testing.assert_allclose(overlap, [0, 0, 0, 0.25])


def test_evaluate_command_on_a_run(quick_run, tmp_path, capsys):
    run = str(tmp_path / "run")  # a copy: the shared run stays as other tests expect it
    shutil.copytree(quick_run, run)
    assert evaluate.main([run, "--beam-size", "2", "--batch-size", "16", "--no-java"]) == 0
    out_dir = os.path.join(run, "eval-test-beam2")
    saved = json.load(open(os.path.join(out_dir, "metrics.json")))
    predictions = json.load(open(os.path.join(out_dir, "predictions.json")))
    per_image = json.load(open(os.path.join(out_dir, "per_image.json")))
    assert len(predictions) == len(per_image) == 30
    assert set(predictions[0]) == {"image_id", "caption", "score", "log_prob"}
    assert saved["decoding"] == "beam 2, length penalty alpha 0" and "attention_pointing" in saved
    # The figures again, from the written predictions and the test split's references and objects alone.
    objects, _ = scoring.shapes_instances(saved["data_root"], "test")
    captions = [p["caption"] for p in predictions]
    truth = [[(o["colour"], o["shape"]) for o in objects[p["image_id"]]] for p in predictions]
    assert saved["object_f1"] == pytest.approx(metrics.object_f1(captions, truth)["object_f1"], abs=1e-12)
    assert_figures_afresh(saved, shapes_references(saved["data_root"]), predictions)
    assert saved["decoding_source"].startswith("beam size as given, no length penalty")
    assert set(saved["genericness"]) == {"beam 2, length penalty alpha 0", "greedy"}
    for name in ("coco_bleu_4", "coco_rouge_l", "coco_cider_d", "nltk_bleu_4"):
        assert name in saved
    assert "Shapes figures" in capsys.readouterr().out
    # Scoring the written results file with no model gives the same COCO numbers.
    results = os.path.join(out_dir, "predictions.json")
    annotations = os.path.join(saved["data_root"], "annotations", "captions_test.json")
    assert evaluate.main(["--results", results, "--annotations", annotations, "--no-java",
                          "--output-dir", os.path.join(out_dir, "rescored")]) == 0
    rescored = json.load(open(os.path.join(out_dir, "rescored", "metrics.json")))
    assert rescored["coco_bleu_4"] == pytest.approx(saved["coco_bleu_4"], abs=1e-12)


def test_evaluate_on_a_foreign_coco_root(quick_run, small_shapes, tmp_path):
    """A COCO-format root not written by this project: PNG files, other names and ids, no instances file."""
    root = tmp_path / "foreign"
    (root / "images" / "test").mkdir(parents=True)
    (root / "annotations").mkdir()
    source = coco.read_split(small_shapes, "test")
    images, annotations = [], []
    for k, example in enumerate(source.examples[:12]):
        name = f"scene_{k}.png"
        Image.open(example.path).save(root / "images" / "test" / name)
        images.append({"id": 500 + k, "file_name": name, "width": 64, "height": 64})
        annotations += [{"id": 9000 + 10 * k + j, "image_id": 500 + k, "caption": c.capitalize() + "."}
                        for j, c in enumerate(example.captions)]
    (root / "annotations" / "captions_test.json").write_text(json.dumps({"images": images,
                                                                         "annotations": annotations}))
    out = tmp_path / "out"
    assert evaluate.main([quick_run, "--data-root", str(root), "--beam-size", "1", "--no-java",
                          "--output-dir", str(out)]) == 0
    saved = json.load(open(out / "metrics.json"))
    assert saved["images"] == 12 and "object_f1" not in saved and saved["decoding"] == "greedy"


def test_evaluate_bad_inputs_exit_2(quick_run, tmp_path, capsys):
    assert evaluate.main(["--results", str(tmp_path / "r.json"), "--annotations", str(tmp_path / "none.json")]) == 2
    assert "Missing captions file" in capsys.readouterr().err
    annotations = tmp_path / "captions.json"
    annotations.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}],
                                       "annotations": [{"id": 1, "image_id": 1, "caption": "a red circle"}]}))
    results = tmp_path / "r.json"
    results.write_text(json.dumps([{"image_id": 2, "caption": "a red circle"}]))
    assert evaluate.main(["--results", str(results), "--annotations", str(annotations), "--no-java"]) == 2
    assert "image ids that the annotations do not have" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "nowhere", ignore_errors=True)
    assert evaluate.main([quick_run, "--data-root", str(tmp_path / "nowhere")]) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--results", str(results)])
    assert exit_info.value.code == 2 and "--results needs --annotations" in capsys.readouterr().err


def test_evaluating_a_run_folder_never_writes_its_data(quick_run, tmp_path, monkeypatch, capsys):
    """A run folder from elsewhere names a data root and Shapes sizes: evaluating must not generate them."""
    run = tmp_path / "someone-elses-run"
    shutil.copytree(quick_run, run)
    config = json.loads((run / "config.json").read_text())
    elsewhere = tmp_path / "elsewhere" / "shapes"
    (run / "config.json").write_text(json.dumps({**config, "data_root": str(elsewhere),
                                                 "shapes_splits": [10 ** 8, 1, 1]}))
    assert evaluate.main([str(run), "--beam-size", "1", "--no-java"]) == 2
    assert "The run's data is not at" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "elsewhere")
    # Its default Shapes place is not written either; the message names the command that would.
    monkeypatch.setenv("CAPTIONER_DATA", str(tmp_path / "data-home"))
    (run / "config.json").write_text(json.dumps({**config, "data_root": None}))
    assert evaluate.main([str(run), "--beam-size", "1", "--no-java"]) == 2
    assert "python -m captioner.data.synthetic.shapes" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "data-home")
    assert sorted(os.listdir(run)) == sorted(os.listdir(quick_run))


def test_a_negative_length_penalty_is_a_usage_error(quick_run):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([quick_run, "--alpha", "-0.5"])
    assert exit_info.value.code == 2


def test_genericness_figures_on_hand_made_captions():
    captions = ["a red circle", "a red circle", "A red circle.", "a blue square and a blue square",
                "two green circles"]
    training = ["a red circle", "a blue square and a blue square", "three shapes"]
    figures = metrics.genericness(captions, training)
    # "A red circle." standardises to the same words as "a red circle": 3 distinct captions of 5.
    assert figures["distinct_captions"] == pytest.approx(3 / 5)
    assert figures["vocabulary_used"] == len({"a", "red", "circle", "blue", "square", "and", "two", "green",
                                               "circles"})
    assert figures["copied_from_train"] == pytest.approx(4 / 5)
    assert figures["repeated_bigram"] == pytest.approx(1 / 5)  # "a blue" and "blue square" twice
    assert metrics.genericness(captions)["copied_from_train"] is None


def test_evaluate_decodes_with_the_runs_recorded_default_and_says_so(quick_run, capsys):
    import captioner
    from captioner import runs
    from captioner.training import decoding_search

    choice = runs.read_json(os.path.join(quick_run, decoding_search.FILE_NAME))
    settings = [decoding_search.setting(row) for row in choice["table"]]
    assert settings == list(decoding_search.GRID) and choice["images"] == 8  # the quick run's search_images
    best = max(choice["table"], key=lambda row: row["cider_d"])
    assert decoding_search.setting(choice) in {decoding_search.setting(r) for r in choice["table"]
                                               if r["cider_d"] == best["cider_d"]}
    model = captioner.load(quick_run)
    assert model.default_decoding == decoding_search.setting(choice)
    out_dir = os.path.join(str(quick_run), "eval-val-default")
    assert evaluate.main([quick_run, "--split", "val", "--no-java", "--output-dir", out_dir]) == 0
    assert "(the model's recorded default)" in capsys.readouterr().err
    saved = json.load(open(os.path.join(out_dir, "metrics.json")))
    assert saved["beam_size"] == choice["beam_size"] and saved["length_penalty"] == choice["alpha"]
    assert saved["decoding_source"] == "the model's recorded default"
    # The search scored the first val images with the scorer evaluation uses: the same figure again.
    row = next(r for r in choice["table"] if (r["beam_size"], r["alpha"]) == (choice["beam_size"], choice["alpha"]))
    first = dataclasses.replace(coco.read_split(saved["data_root"], "val"),
                                examples=coco.read_split(saved["data_root"], "val").examples[:choice["images"]])
    scores, _, _ = scoring.evaluate_model(model, first, saved["data_root"], 16, use_java=False, progress=False)
    assert scores["coco_cider_d"] == pytest.approx(row["cider_d"], abs=1e-4)


def test_evaluating_on_the_runs_own_data_without_its_train_images(quick_run, small_shapes, tmp_path, capsys):
    """Only the test images copied to another machine: the test split is scored, the copied share left out."""
    root = tmp_path / "test-only"
    shutil.copytree(os.path.join(small_shapes, "annotations"), root / "annotations")
    shutil.copytree(os.path.join(small_shapes, "images", "test"), root / "images" / "test")
    run = tmp_path / "run"
    shutil.copytree(quick_run, run, ignore=shutil.ignore_patterns("eval-*"))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data_root": str(root)}))
    assert evaluate.main([str(run), "--beam-size", "1", "--no-java", "--output-dir", str(tmp_path / "out")]) == 0
    assert "the copied-caption share is left out" in capsys.readouterr().err
    saved = json.load(open(tmp_path / "out" / "metrics.json"))
    assert saved["images"] == 30 and saved["genericness"]["greedy"]["copied_from_train"] is None


def test_results_are_matched_to_a_split_by_the_folders_and_name_their_paths_share():
    """A record is the split image whose path in the dataset its own path ends with (or whose path ends with
    the whole record's); another folder's file of the same name is not; unmatched ids the split knows stay."""
    from captioner.evaluation.results_files import match_paths

    images = [("test/1.jpg", 101), ("test/2.jpg", 102), ("images/test/000000008501.jpg", 8501)]
    entries = [{"path": "/data/if/validation/1.jpg", "image_id": 1, "caption": "other folder"},
               {"path": "/data/if/test/2.jpg", "image_id": 7, "caption": "by path"},
               {"path": "./1.jpg", "image_id": 9, "caption": "written from inside the folder"},
               {"file_name": "8501.jpg", "image_id": 8501, "caption": "the split's own id"},
               {"file_name": "photos/000000008501.jpg", "image_id": 8501, "caption": "a copy, COCO-numbered"},
               {"image_id": 102, "caption": "no path"}]
    matched, outside = match_paths(entries, images, known_ids={101, 102, 8501})
    assert outside == 1
    assert [(e["caption"], e["image_id"]) for e in matched] == [
        ("by path", 102), ("written from inside the folder", 101), ("the split's own id", 8501),
        ("a copy, COCO-numbered", 8501), ("no path", 102)]
    # The same name in two folders: the record's folders decide, and a bare name is ambiguous.
    twins = [("a/1.jpg", 1), ("b/1.jpg", 2)]
    matched, outside = match_paths([{"path": "x/b/1.jpg", "image_id": 5, "caption": "b"},
                                    {"path": "1.jpg", "image_id": 6, "caption": "which?"}], twins, known_ids={1, 2})
    assert [(e["caption"], e["image_id"]) for e in matched] == [("b", 2)] and outside == 1


def test_a_broken_jsonl_record_is_named_by_its_line_and_odd_file_names_are_read(tmp_path):
    from captioner.data.coco import DatasetError
    from captioner.evaluation.results_files import read_results

    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"path": "a.jpg", "image_id": 1, "caption": "a red circle"}\n{"path": "b.jpg", "ima\n')
    with pytest.raises(DatasetError, match="line 2"):
        read_results(str(torn))
    # The caption command writes a file name that is not UTF-8 as the file system gives it (Latin-1 here).
    odd = tmp_path / "odd.csv"
    odd.write_bytes(b"path,image_id,caption,score,error\ncaf\xe9.jpg,3,a blue square,-1.0,\n")
    entries, failed = read_results(str(odd))
    assert failed == 0 and entries[0]["image_id"] == 3 and entries[0]["caption"] == "a blue square"


def test_another_evaluation_in_the_same_folder_is_refused_not_replaced(small_shapes, tmp_path, capsys):
    """One results file scored against two annotation files goes to NAME.EXT-eval/ both times: the second is
    refused (exit status 2) and the first's metrics are kept."""
    annotations = os.path.join(small_shapes, "annotations", "captions_test.json")
    other = tmp_path / "captions_other.json"
    shutil.copy(annotations, other)
    payload = json.load(open(annotations))
    first_caption = {}
    for entry in payload["annotations"]:
        first_caption.setdefault(entry["image_id"], entry["caption"])
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in first_caption.items()]))
    assert evaluate.main(["--results", str(results), "--annotations", annotations, "--no-java", "--quiet"]) == 0
    written = open(tmp_path / "results.json-eval" / "metrics.json").read()
    capsys.readouterr()
    assert exit_status(evaluate.main, ["--results", str(results), "--annotations", str(other), "--no-java",
                                       "--quiet"]) == 2
    assert "holds another evaluation (annotations" in capsys.readouterr().err
    assert open(tmp_path / "results.json-eval" / "metrics.json").read() == written

"""Results files in and evaluation folders out: what `python -m captioner.evaluate` reads and where it writes.

Read: a COCO results list (`[{"image_id", "caption"}]`, `.json`), or what
`python -m captioner.caption` writes (`.jsonl`, `.csv`; records of files that
could not be captioned are left out and counted). Written: an evaluation
folder holding `metrics.json`, `per_image.json` and, for a run,
`predictions.json`; never a run folder, and never over a `metrics.json` that
this command did not write.
"""

import csv
import json
import os

from captioner import runs
from captioner.data.coco import DatasetError
from captioner.evaluation import coco_eval

WRITTEN_BY = "python -m captioner.evaluate"
FORMS = ("a COCO results list (.json: [{\"image_id\": 42, \"caption\": \"...\"}, ...]), or the .jsonl or .csv "
         "that python -m captioner.caption writes")


def read_results(path):
    """The entries of a results file as `[{"image_id", "caption"}]`, and how many records were left out
    (files the caption command could not read). Raises `DatasetError` saying what is accepted."""
    if not os.path.isfile(path):
        raise DatasetError(f"Missing results file: {path} does not exist")
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension == ".jsonl":
            return _records([json.loads(line) for line in open(path, encoding="utf-8") if line.strip()], path)
        if extension == ".csv":
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            if rows and not {"image_id", "caption"} <= set(rows[0]):
                raise DatasetError(f"{path} has no image_id and caption columns; expected {FORMS}")
            return _records([{**row, "image_id": _number(row.get("image_id"))} for row in rows], path)
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), 0
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not a results file ({error.msg}, line {error.lineno}); expected {FORMS}") \
            from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not UTF-8 text; expected {FORMS}") from None


def _number(text):
    return int(text) if isinstance(text, str) and text.strip().isdigit() else text


def _records(records, path):
    """The caption command's records as results entries; those of failed files (an `error`) left out."""
    if not all(isinstance(r, dict) and "image_id" in r and "caption" in r for r in records):
        raise DatasetError(f"{path}: a record lacks image_id or caption; expected {FORMS}")
    failed = [r for r in records if r.get("error")]
    return [{"image_id": r["image_id"], "caption": r["caption"]} for r in records if not r.get("error")], len(failed)


def check_ids(entries, references, source):
    """`coco_eval.check_results`, first telling string ids that are numbers from ids unknown to the split."""
    strings = [e.get("image_id") for e in entries if isinstance(e, dict) and isinstance(e.get("image_id"), str)]
    if strings and any(s.strip().isdigit() and int(s) in references for s in strings):
        raise DatasetError(f"{source}: image ids are strings ({strings[0]!r}, ...) where the annotations' are "
                           "numbers; write them as numbers (\"image_id\": 42)")
    return coco_eval.check_results(entries, references, source)


def default_output_dir(results_path):
    """`NAME-eval/` beside a results file `NAME.ext`: a folder of the evaluation's own."""
    stem, _ = os.path.splitext(os.path.abspath(results_path))
    return f"{stem}-eval"


def check_output_dir(output_dir):
    """Refuses (ValueError) a folder that is a run folder, or holds a `metrics.json` this command did not write."""
    if os.path.exists(os.path.join(output_dir, runs.CONFIG)) or os.path.exists(os.path.join(output_dir, runs.MODEL)):
        raise ValueError(f"{output_dir} is a run folder: its metrics.json is the run's own; write the evaluation "
                         "elsewhere (--output-dir)")
    path = os.path.join(output_dir, "metrics.json")
    if os.path.exists(path):
        try:
            written_by = runs.read_json(path).get("written_by")
        except (ValueError, AttributeError, OSError):
            written_by = None
        if written_by != WRITTEN_BY:
            raise ValueError(f"{path} was not written by {WRITTEN_BY}; it is left untouched: choose another "
                             "--output-dir")


def write(output_dir, metrics, per_image, predictions=None):
    """Writes the evaluation folder (atomic files), after `check_output_dir`."""
    check_output_dir(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    if predictions is not None:
        runs.write_json(os.path.join(output_dir, "predictions.json"), predictions)
    runs.write_json(os.path.join(output_dir, "per_image.json"),
                    [{"image_id": i, **scores} for i, scores in per_image.items()])
    runs.write_json(os.path.join(output_dir, "metrics.json"), {**metrics, "written_by": WRITTEN_BY})

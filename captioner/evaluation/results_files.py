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
            records = []
            # File names that are not UTF-8 are written as the file system gives them (surrogate escapes).
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as error:
                            raise DatasetError(f"{path} is not a results file ({error.msg}, line {number}); "
                                               f"expected {FORMS}") from None
            return _records(records, path)
        if extension == ".csv":
            with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
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
    return [{"image_id": r["image_id"], "caption": r["caption"], **({"path": r["path"]} if r.get("path") else {})}
            for r in records if not r.get("error")], len(failed)


def _parts(path):
    return [part for part in os.path.normpath(str(path)).replace("\\", "/").split("/") if part not in ("", ".")]


def split_images(examples, root):
    """`(path relative to root, image_id)` of a split's examples (`coco.Example`), for `match_paths`."""
    images = []
    for example in examples:
        relative = os.path.relpath(example.path, root) if root else example.path
        images.append((example.path if relative.startswith("..") else relative, example.image_id))
    return images


def match_paths(entries, images, known_ids=()):
    """The entries with the image ids of `images` (`[(path in the dataset, image_id)]`), found by file path,
    and the number of entries left out because their file is not one of those images.

    The caption command numbers the files of a folder itself (a name that is a number, as in MS COCO,
    keeps it) and writes each record's path as it was given, relative to wherever it ran; a split's ids
    are the dataset's own (Flickr photo ids, hashed keys of an image folder). So a record's file is the
    image whose path in the dataset (`images/test/x.jpg`, `test/1.jpg`, `val2014/COCO_val2014_...jpg`)
    the record's path ends with, or whose path ends with the whole of the record's (`1.jpg` written from
    inside the folder), when exactly one image is. A record whose path names another folder
    (`validation/1.jpg` against `test/1.jpg`) is not that image. A record no path matches keeps its own
    id when that id is one of `known_ids` (a COCO results list keyed by the split's ids, or COCO-numbered
    files copied elsewhere); otherwise it is left out. Entries without a path (`path`, or `file_name` in
    a COCO results list) keep their ids.
    """
    def path_of(entry):
        return (entry.get("path") or entry.get("file_name")) if isinstance(entry, dict) else None

    if not any(path_of(e) for e in entries):
        return entries, 0
    by_name = {}
    for path, image_id in images:
        parts = _parts(path)
        if parts:
            by_name.setdefault(parts[-1], []).append((parts, image_id))
    known = set(known_ids)
    matched, outside = [], 0
    for entry in entries:
        if not path_of(entry):
            matched.append(entry)
            continue
        parts = _parts(path_of(entry))
        found = []
        for candidate, image_id in by_name.get(parts[-1] if parts else None, []):
            common = 0
            while common < min(len(parts), len(candidate)) and parts[-1 - common] == candidate[-1 - common]:
                common += 1
            if common in (len(parts), len(candidate)):
                found.append(image_id)
        if len(found) == 1:
            matched.append({**entry, "image_id": found[0]})
        elif not found and entry.get("image_id") in known:
            matched.append(entry)
        else:
            outside += 1
    return matched, outside


def check_ids(entries, references, source):
    """`coco_eval.check_results`, first telling string ids that are numbers from ids unknown to the split."""
    strings = [e.get("image_id") for e in entries if isinstance(e, dict) and isinstance(e.get("image_id"), str)]
    if strings and any(s.strip().isdigit() and int(s) in references for s in strings):
        raise DatasetError(f"{source}: image ids are strings ({strings[0]!r}, ...) where the annotations' are "
                           "numbers; write them as numbers (\"image_id\": 42)")
    return coco_eval.check_results(entries, references, source)


def default_output_dir(results_path):
    """`NAME.EXT-eval/` beside a results file `NAME.EXT`: a folder of the evaluation's own (the extension
    kept, so that `captions.csv` and `captions.json` beside each other do not share one)."""
    return f"{os.path.abspath(results_path)}-eval"


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


# What an evaluation is of: another evaluation in the same folder is refused, not replaced.
IDENTITY = ("results", "annotations", "split", "dataset", "data_root", "karpathy_json", "imagefolder_options",
            "max_length", "decoding")


def check_same_evaluation(output_dir, metrics):
    """Refuses (ValueError) to write `metrics` over an evaluation in `output_dir` of other data or settings."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.exists(path):
        return
    try:
        old = runs.read_json(path)
    except (ValueError, OSError):
        return  # check_output_dir has said what it thinks of the file
    differ = [key for key in IDENTITY if key in old and key in metrics and old[key] != metrics[key]]
    differ += [key for key in ("max_length",) if (key in old) != (key in metrics)]
    if differ:
        listed = "; ".join(f"{key} {old.get(key)!r}, now {metrics.get(key)!r}" for key in differ)
        raise ValueError(f"{output_dir} holds another evaluation ({listed}); it is left untouched: choose "
                         "another --output-dir")


def write(output_dir, metrics, per_image, predictions=None):
    """Writes the evaluation folder (atomic files), after `check_output_dir` and `check_same_evaluation`."""
    check_output_dir(output_dir)
    check_same_evaluation(output_dir, metrics)
    os.makedirs(output_dir, exist_ok=True)
    if predictions is not None:
        runs.write_json(os.path.join(output_dir, "predictions.json"), predictions)
    runs.write_json(os.path.join(output_dir, "per_image.json"),
                    [{"image_id": i, **scores} for i, scores in per_image.items()])
    runs.write_json(os.path.join(output_dir, "metrics.json"), {**metrics, "written_by": WRITTEN_BY})

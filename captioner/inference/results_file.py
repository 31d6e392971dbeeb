"""Results files of `python -m captioner.caption`: streamed, resumable, one record per image at the end.

A results file is JSON Lines (`.jsonl`), CSV (`.csv`) or a COCO results list
(`.json`). Each result is appended as soon as it is known (COCO results stream
to `OUTPUT.partial.jsonl`, and the list is written at the end), so a run that
is cut short loses at most the record it was writing: a torn last record is
dropped when the same command runs again, and that image is captioned again.

Beside the results, `OUTPUT.source.json` records what produced them: the
model's weights fingerprint and the decoding settings. A rerun onto the same
output skips the images already captioned (an empty caption is a result too;
only failures are tried again), but only when it would produce the same
captions; otherwise it refuses (or starts afresh with `overwrite`). At the end
the file is compacted to one record per image: a success replaces an earlier
failure of the same file. One process writes a results file at a time.
"""

import contextlib
import csv
import hashlib
import json
import os
import re
import sys

import keras
import numpy as np

from captioner import files

FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".json": "coco"}
CSV_FIELDS = ("path", "image_id", "caption", "score", "error")


def csv_fields(num_captions=1):
    """The CSV columns: one row per image, the n-best after the best as `caption_2, score_2, ...`."""
    ranked = tuple(f"{name}_{rank}" for rank in range(2, num_captions + 1) for name in ("caption", "score"))
    return CSV_FIELDS[:4] + ranked + CSV_FIELDS[4:]


def csv_row(record, fields):
    """A record as a CSV row of `fields` (its `captions` list spread over `caption_2, score_2, ...`)."""
    row = {key: record.get(key, "") for key in fields}
    for rank, entry in enumerate(record.get("captions", [])[1:], 2):
        row[f"caption_{rank}"], row[f"score_{rank}"] = entry["caption"], entry["score"]
    return row


class ResultsMismatchError(ValueError):
    """An existing results file was made by another model or with other decoding settings."""


def output_format(path):
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"output {path}: use .jsonl (JSON Lines), .csv, or .json (COCO results)")
    return FORMATS[extension]


def model_fingerprint(model):
    """A short hash of the model's weights: the same file of weights, the same fingerprint.

    Values and shapes in order, not variable names: Keras numbers the names of
    a model loaded twice in one process apart.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- image ids


_COCO_NAME = re.compile(r"(?:COCO_[A-Za-z]+\d*_)?(\d{1,15})")


def numeric_id(path):
    """The id a file name states (`000000000042.jpg`, `COCO_val2014_000000000042.jpg` -> 42), or None."""
    match = _COCO_NAME.fullmatch(os.path.splitext(os.path.basename(path))[0])
    return int(match.group(1)) if match else None


def assign_image_ids(paths, known):
    """Integer ids for `paths`, unique among themselves and the `known` ones (path -> id, kept as they are).

    A file whose name is a number (as in MS COCO) gets that number unless another
    file has it; every other file gets the next free id above all ids in use.
    The mapping is written into the results (path and id of every record), and
    the ids already there are read back first, so ids are stable across reruns.
    """
    ids = dict(known)
    used = set(ids.values())
    for path in paths:
        number = numeric_id(path)
        if path not in ids and number is not None and number not in used:
            ids[path] = number
            used.add(number)
    following = max(used, default=0) + 1
    for path in paths:
        if path not in ids:
            ids[path] = following
            used.add(following)
            following += 1
    return ids


# ---------------------------------------------------------------- the results file


def _stream_path(path, kind):
    # COCO results are one JSON list; records stream to a side file and the list is written at the end.
    return f"{path}.partial.jsonl" if kind == "coco" else path


def source_path(path):
    return f"{path}.source.json"


def drop_torn_tail(path, terminator=b"\n"):
    """Cuts a file back to its last complete record: the one a killed process was writing goes.

    Records end with `terminator`: a newline for JSON Lines, `\\r\\n` for CSV,
    whose quoted fields (a file name with a newline in it) may hold a bare newline.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-len(terminator), os.SEEK_END)
        if handle.read(len(terminator)) == terminator:
            return
        handle.seek(0)
        data = handle.read()
        end = data.rfind(terminator)
        handle.truncate(end + len(terminator) if end >= 0 else 0)


def _open_text(path, mode):
    # File names that are not valid UTF-8 reach us as surrogate escapes (os.fsdecode); CSV keeps their bytes.
    return open(path, mode, newline="", encoding="utf-8", errors="surrogateescape")


def _read_records(path, kind):
    """Records of a stream file (after `drop_torn_tail`); lines that do not parse are skipped."""
    if not os.path.exists(path):
        return []
    if kind == "csv":
        with _open_text(path, "r") as handle:
            rows = [row for row in csv.DictReader(handle) if None not in row.values() and row.get("path")]
        return [{**row, "image_id": int(row["image_id"]) if row.get("image_id", "").isdigit() else None}
                for row in rows]
    records = []
    with open(path) as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                records.append(record)
    return records


def _compact(records):
    """One record per path, in first-seen order: the last success, else the last failure."""
    kept = {}
    for record in records:
        previous = kept.get(record["path"])
        if previous is None or record.get("caption") or not previous.get("caption"):
            kept[record["path"]] = record
    return list(kept.values())


class ResultsInUseError(ValueError):
    """Another process is writing the same results file."""


class ResultsFile:
    """A results file being extended: what it holds, appending records, and compacting at the end.

    One process at a time: `OUTPUT.lock` is held (`captioner.files.exclusive`) for
    the whole run and deleted after, and a second run onto the same output is
    refused rather than interleaved.
    An existing output is only resumed when `OUTPUT.source.json` says it was
    made the same way; anything else there (another model's results, a file
    this program did not write) is refused before it is touched.

    Args:
        path: str, the output (.jsonl, .csv or .json).
        source: dict, what produces the new records (see `describe_source`).
        overwrite: bool, discard existing results instead of resuming them.
    """

    def __init__(self, path, source, overwrite=False):
        self.path, self.kind = path, output_format(path)
        self.stream = _stream_path(path, self.kind)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.lock = files.exclusive(f"{self.path}.lock")  # exists only while this run writes
        try:
            self.lock.__enter__()
        except files.LockedError as error:
            raise ResultsInUseError(f"{error.who} is writing {self.path}; wait for it to finish, or choose another "
                                    "output") from None
        try:
            self._open(source, overwrite)
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise

    def _open(self, source, overwrite):
        if overwrite:
            for old in {self.path, self.stream, source_path(self.path)}:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(old)
        if any(os.path.exists(p) and os.path.getsize(p) > 0 for p in {self.path, self.stream}):
            self._check_source(source)  # before anything is cut or rewritten
        drop_torn_tail(self.stream, b"\r\n" if self.kind == "csv" else b"\n")
        records = _read_records(self.stream, self.kind)
        if self.kind == "coco" and os.path.exists(self.path):
            records = self._coco_records() + records
        self.records = _compact(records)
        self.done = {r["path"] for r in self.records if not r.get("error")}  # an empty caption is a result
        self.ids = {r["path"]: int(r["image_id"]) for r in self.records if r.get("image_id") is not None}
        with files.replacing(source_path(self.path)) as temporary, open(temporary, "w") as handle:
            json.dump(source, handle, indent=2)
        if self.kind == "coco" and os.path.exists(self.path) and not os.path.exists(self.stream):
            # Resuming a finished COCO output: its entries are carried over as lines.
            with files.replacing(self.stream) as temporary, open(temporary, "w") as out:
                out.writelines(json.dumps(r) + "\n" for r in self._coco_records())
        new = not os.path.exists(self.stream) or os.path.getsize(self.stream) == 0
        self.handle = _open_text(self.stream, "a")
        self.fields = csv_fields(source.get("num_captions", 1))
        if self.kind == "csv":
            self.csv = csv.DictWriter(self.handle, self.fields)
            if new:
                self.csv.writeheader()

    def _coco_records(self):
        try:
            entries = json.load(open(self.path))
            return [{"path": e["file_name"], "image_id": e["image_id"], "caption": e["caption"]} for e in entries]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ResultsMismatchError(f"{self.path} is not a COCO results file of captioner.caption ({error}); "
                                       "choose another output or --overwrite") from None

    def _check_source(self, source):
        recorded_path = source_path(self.path)
        if not os.path.exists(recorded_path):
            raise ResultsMismatchError(
                f"{self.path} holds results without a record of what made them ({recorded_path} is missing), so "
                "they cannot be resumed safely: choose another output, or --overwrite to start afresh")
        with open(recorded_path) as handle:
            recorded = json.load(handle)
        differences = {k: (recorded.get(k), v) for k, v in source.items() if recorded.get(k) != v}
        if differences:
            listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in differences.items())
            raise ResultsMismatchError(
                f"{self.path} holds results made by another model or other settings ({listed}): choose another "
                "output, or --overwrite to replace them")

    def write(self, record):
        if self.kind == "csv":
            self.csv.writerow(csv_row(record, self.fields))
        else:
            self.handle.write(json.dumps(record) + "\n")

    def flush(self):
        self.handle.flush()

    def close(self):
        """Compacts the records to one per image and, for COCO, writes the results list; then unlocks."""
        try:
            self.handle.close()
            self._publish(_compact(_read_records(self.stream, self.kind)))
        finally:
            self.lock.__exit__(None, None, None)

    def _publish(self, records):
        if self.kind == "coco":
            entries = [{"image_id": r["image_id"], "caption": r["caption"], "file_name": r["path"]}
                       for r in records if not r.get("error")]  # an empty caption is scored, as empty
            with files.replacing(self.path) as temporary, open(temporary, "w") as handle:
                json.dump(entries, handle, indent=1)
            os.remove(self.stream)
            return
        with files.replacing(self.path) as temporary, _open_text(temporary, "w") as handle:
            if self.kind == "csv":
                writer = csv.DictWriter(handle, self.fields)
                writer.writeheader()
                writer.writerows(csv_row(r, self.fields) for r in records)
            else:
                handle.writelines(json.dumps(r) + "\n" for r in records)


class StdoutResults:
    """Results written as JSON lines to standard output (`-o -`), for a pipe: nothing to resume or compact."""

    kind = "jsonl"
    done, ids = frozenset(), {}

    def write(self, record):
        sys.stdout.write(json.dumps(record) + "\n")

    def flush(self):
        sys.stdout.flush()

    def close(self):
        sys.stdout.flush()

"""Captioning a folder of images with a trained model, streaming results to a file."""

import csv
import json
import os
import threading

import keras
import tensorflow as tf

from captioner import files
from captioner.data import images as images_lib
from captioner.data.pipeline import normalize_image, resize_image

FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".json": "coco"}
CSV_FIELDS = ("path", "caption", "score", "error")


def output_format(path):
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"output {path}: use .jsonl (JSON Lines), .csv, or .json (COCO results)")
    return FORMATS[extension]


def done_paths(path, kind):
    """Paths already captioned in an existing output (errors are tried again)."""
    done = set()
    if kind == "csv":
        if os.path.exists(path):
            with open(path, newline="") as handle:
                done = {row["path"] for row in csv.DictReader(handle) if row.get("caption")}
        return done
    if kind == "coco" and os.path.exists(path):
        with open(path) as handle:
            done = {entry["file_name"] for entry in json.load(handle)}
    stream = _stream_path(path, kind)
    if os.path.exists(stream):
        with open(stream) as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: caption that image again
                if entry.get("caption"):
                    done.add(entry["path"])
    return done


def _stream_path(path, kind):
    # COCO results are one JSON list; lines stream to a side file and the list is written at the end.
    return f"{path}.partial.jsonl" if kind == "coco" else path


class ResultWriter:
    """Appends each result as soon as it is known, flushed per batch."""

    def __init__(self, path, kind):
        self.path, self.kind = path, kind
        stream = _stream_path(path, kind)
        if kind == "coco" and not os.path.exists(stream) and os.path.exists(path):
            # Resuming a finished COCO output: carry its entries over as lines.
            with open(path) as handle, open(stream, "w") as out:
                for entry in json.load(handle):
                    out.write(json.dumps({"path": entry["file_name"], "image_id": entry["image_id"],
                                          "caption": entry["caption"]}) + "\n")
        new = not os.path.exists(stream) or os.path.getsize(stream) == 0
        self.handle = open(stream, "a", newline="")
        self.lock = threading.Lock()  # unreadable files are reported from the reading thread
        if kind == "csv":
            self.csv = csv.DictWriter(self.handle, CSV_FIELDS)
            if new:
                self.csv.writeheader()

    def write(self, entry):
        with self.lock:
            if self.kind == "csv":
                self.csv.writerow({k: entry.get(k, "") for k in CSV_FIELDS})
            else:
                self.handle.write(json.dumps(entry) + "\n")

    def flush(self):
        self.handle.flush()

    def close(self):
        self.handle.close()
        if self.kind == "coco":
            stream = _stream_path(self.path, self.kind)
            entries = []
            with open(stream) as handle:
                for line in handle:
                    entry = json.loads(line)
                    if entry.get("caption"):
                        entries.append({"image_id": entry["image_id"], "caption": entry["caption"],
                                        "file_name": entry["path"]})
            with files.replacing(self.path) as temporary, open(temporary, "w") as handle:
                json.dump(entries, handle, indent=1)
            os.remove(stream)


def image_id_for(path, position):
    """COCO results need integer ids: the digits of a COCO-style file name, else the position."""
    digits = "".join(ch for ch in os.path.splitext(os.path.basename(path))[0].split("_")[-1] if ch.isdigit())
    return int(digits) if digits else position


def caption_folder(model, folder, output, beam_size=3, batch_size=32, recursive=False, alpha=0.0,
                   attention_dir=None, progress=True):
    """Captions every image under `folder` into `output` (.jsonl, .csv or .json), skipping done ones.

    Returns `{"captioned", "failed", "skipped"}` counts. Memory stays flat: files
    are found, read, captioned and written in a stream.
    """
    kind = output_format(output)
    done = done_paths(output, kind)
    paths = [p for p in images_lib.find_images(folder, recursive) if p not in done]
    writer = ResultWriter(output, kind)
    bar = keras.utils.Progbar(len(paths), unit_name="image") if progress else None
    counts = {"captioned": 0, "failed": 0, "skipped": len(done)}

    def signature():
        for position, (path, pixels, reason) in enumerate(images_lib.read_images(paths)):
            if reason:
                writer.write({"path": path, "image_id": image_id_for(path, position), "caption": "",
                              "error": reason})
                counts["failed"] += 1
                if bar:
                    bar.add(1)
                continue
            yield position, pixels

    needs_pixels = attention_dir is not None
    if needs_pixels:
        from captioner import plots  # matplotlib only when figures are asked for

    def preprocess(position, pixels):
        image = normalize_image(resize_image(pixels, model.image_size), model.normalization)
        kept = pixels if needs_pixels else pixels[:0, :0]  # original pixels only for the figures
        return position, kept, tf.shape(pixels)[:2], image

    dataset = tf.data.Dataset.from_generator(
        signature, output_signature=(tf.TensorSpec([], tf.int64), tf.TensorSpec([None, None, 3], tf.uint8)))
    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).padded_batch(batch_size).prefetch(1)
    try:
        for positions, pixels, sizes, batch in dataset:
            result = model.generate(batch, beam_size=beam_size, alpha=alpha)
            captions = [c.decode("utf-8") for c in result["captions"].numpy()]
            scores = result["scores"].numpy()
            for row, position in enumerate(positions.numpy()):
                path = paths[position]
                writer.write({"path": path, "image_id": image_id_for(path, int(position)),
                              "caption": captions[row], "score": round(float(scores[row]), 6)})
                if attention_dir:
                    height, width = sizes[row].numpy()
                    plots.save_attention_figure(
                        pixels[row, :height, :width].numpy(), captions[row], result["attention"][row].numpy(),
                        model.encoder.grid_shape, os.path.join(attention_dir, _figure_name(folder, path)))
            counts["captioned"] += len(captions)
            writer.flush()
            if bar:
                bar.add(len(captions))
    finally:
        writer.close()
    return counts


def _figure_name(folder, path):
    relative = os.path.relpath(path, folder)
    return os.path.splitext(relative.replace(os.sep, "__"))[0] + ".png"

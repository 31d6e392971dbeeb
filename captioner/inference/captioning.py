"""Captioning a folder of images with a trained model (or an export), streaming results to a file.

The results file (JSON Lines, CSV or a COCO results list; streamed, resumable,
tied to the model and decoding that wrote it) is `captioner.inference.results_file`;
the attention figures of `--attention-dir` are drawn here.
"""

import hashlib
import os

import numpy as np

from captioner.console import Progress
from captioner.data import images as images_lib
from captioner.data.pipeline import normalize_image, resize_image
from captioner.inference.exported import ExportedCaptioner, pixels_for_export
from captioner.inference.results_file import ResultsFile, StdoutResults, assign_image_ids, model_fingerprint

PREVIEW_SIDE = 512  # attention figures draw the image at most this large: no need to keep more pixels


def describe_source(model, decoding, max_length=None):
    """What determines a caption: the model's weights and the decoding settings (a `Decoding`); an export's own."""
    if isinstance(model, ExportedCaptioner):
        return model.source()
    return {"model": model_fingerprint(model), "beam_size": decoding.beam_size, "alpha": decoding.alpha,
            "max_length": max_length or model.decoder.max_length, **decoding.to_json()}


# ---------------------------------------------------------------- attention figures


def figure_path(attention_dir, folder, path):
    """`attention_dir/<path relative to folder>.png`: the folder tree mirrored, the file's full name kept.

    `x.jpg` and `x.png` give `x.jpg.png` and `x.png.png`; `a/b.jpg` and `a__b.jpg` stay apart. A name
    too long for the file system once `.png` is added keeps its first 200 bytes and a hash of the rest.
    """
    relative = os.path.relpath(path, folder)
    head, name = os.path.split(relative)
    if len(os.fsencode(name)) > 250:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
        name = os.fsencode(name)[:200].decode("utf-8", "ignore") + f"-{digest}"
    return os.path.join(attention_dir, head, name + ".png")


def check_attention_dir(attention_dir, folder, recursive):
    """Refuses a figure folder where figures could replace or join the images being captioned.

    Figures mirror the image folder's tree, so the two may not overlap: the
    same folder, the image folder inside the figure folder, or (with
    `recursive`) the figure folder inside the image folder.
    """
    figures, images = os.path.realpath(attention_dir), os.path.realpath(folder)
    common = os.path.commonpath([figures, images])
    if common == figures or (common == images and recursive):
        raise ValueError(f"--attention-plots {attention_dir} overlaps the image folder {folder}: figures could "
                         "overwrite images or be captioned as images on the next run; choose a folder outside it")


def _preview(pixels):
    """The image at most `PREVIEW_SIDE` pixels on its long side, for a figure."""
    from PIL import Image

    height, width = pixels.shape[:2]
    scale = PREVIEW_SIDE / max(height, width)
    if scale >= 1:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))


# ---------------------------------------------------------------- captioning


class NoImagesError(ValueError):
    """A folder with nothing to caption; the message says where images are if they are in its subfolders."""


def find_inputs(target, recursive=False):
    """The images to caption: `target` itself if it is a file, else those found in the folder `target`.

    Raises `NoImagesError` for a folder without images, naming the subfolder that holds some when
    `recursive` was not asked for, and `FileNotFoundError` for a path that does not exist.
    """
    if os.path.isfile(target):
        return [target]
    if not os.path.isdir(target):
        raise FileNotFoundError(f"{target}: no such file or folder")
    paths = list(images_lib.find_images(target, recursive))
    if paths:
        return paths
    hint = ""
    if not recursive:
        below = next(iter(images_lib.find_images(target, recursive=True)), None)
        if below is not None:
            hint = (f"; its subfolders hold images (e.g. {below}): add --recursive to caption those")
    raise NoImagesError(f"no images found in {target} (looked for {', '.join(images_lib.EXTENSIONS)}){hint}")


def caption_folder(model, folder, output, beam_size=None, batch_size=32, recursive=False, alpha=None,
                   attention_dir=None, progress=True, overwrite=False, max_length=None,
                   memory_budget=images_lib.DEFAULT_MEMORY_BUDGET, decoding=None):
    """Captions every image under `folder` (or the one image file `folder`) into `output`, skipping done ones.

    `output` is a .jsonl, .csv or .json (COCO results) file, or "-" for JSON lines on standard output.
    Memory is bounded by bytes, not by a count of images: files are decoded by
    a few threads within `memory_budget` bytes of decoded pixels (one larger
    image still goes, alone), each is resized to the model's input at once,
    and only that (plus a small preview for a figure) waits for its batch.

    Decoding is `decoding` (a `Decoding`), else the model's recorded default with `beam_size` and `alpha`
    where given. With more than one caption an image, each record holds the n-best in `captions`
    (`[{"caption", "score", "log_prob"}]`, best first; CSV: `caption_2, score_2, ...`); the COCO results
    file keeps the best.

    Returns `{"captioned", "failed", "skipped", "failures"}`: counts, and the `(path, reason)` of each file
    that could not be captioned.
    """
    decoding = decoding or model.decoding_settings(beam_size, alpha)
    exported = isinstance(model, ExportedCaptioner)  # uint8 pixels in, the decoding fixed inside, no attention
    if exported and attention_dir is not None:
        raise ValueError("attention figures need a run's model: an export returns captions and scores only")
    paths = find_inputs(folder, recursive)
    base = os.path.dirname(folder) if os.path.isfile(folder) else folder  # figures mirror the tree from here
    if attention_dir is not None:
        check_attention_dir(attention_dir, base, recursive)
        from captioner.inference import figures  # matplotlib only when figures are asked for
    if output == "-":
        results = StdoutResults()
    else:
        results = ResultsFile(output, describe_source(model, decoding, max_length), overwrite)
    # A file is the one the results file names however its path is spelled this time (relative or absolute,
    # through a link): it keeps its record, its id and the spelling it was written with.
    spelled = {os.path.realpath(p): p for p in [*results.ids, *results.done]}
    paths = [spelled.get(os.path.realpath(p), p) for p in paths]
    skipped = sum(p in results.done for p in paths)
    paths = [p for p in paths if p not in results.done]
    ids = assign_image_ids(paths, results.ids)
    bar = Progress(len(paths), "Captioning", enabled=progress)
    counts = {"captioned": 0, "failed": 0, "skipped": skipped, "failures": []}
    size, mode = model.image_size, model.normalization

    def prepare(pixels):
        resized = resize_image(pixels, size)
        image = pixels_for_export(resized) if exported else normalize_image(resized, mode).numpy()
        return image, (_preview(pixels) if attention_dir is not None else None)

    def caption_batch(batch):
        result = model.generate(np.stack([image for _, image, _ in batch]), max_length=max_length,
                                decoding=decoding)
        captions = [c.decode("utf-8") for c in np.asarray(result["captions"])]
        scores = np.asarray(result["scores"])
        nbest = ([np.asarray(result[f"nbest_{key}"]) for key in ("captions", "scores", "log_probs")]
                 if decoding.num_captions > 1 else None)
        for row, (path, _, preview) in enumerate(batch):
            record = {"path": path, "image_id": ids[path], "caption": captions[row],
                      "score": round(float(scores[row]), 6)}
            if nbest is not None:
                record["captions"] = [{"caption": text.decode("utf-8"), "score": round(float(score), 6),
                                       "log_prob": round(float(lp), 6)}
                                      for text, score, lp in zip(nbest[0][row], nbest[1][row], nbest[2][row])]
            results.write(record)
            if attention_dir is not None:
                figures.save_attention_figure(preview, captions[row], result["attention"][row].numpy(),
                                              model.encoder.grid_shape, figure_path(attention_dir, base, path))
        counts["captioned"] += len(batch)
        results.flush()

    batch = []
    try:
        for path, prepared, reason in images_lib.read_images(paths, prepare=prepare, memory_budget=memory_budget):
            if reason:
                results.write({"path": path, "image_id": ids[path], "caption": "", "error": reason})
                counts["failed"] += 1
                counts["failures"].append((path, reason))
            else:
                batch.append((path, *prepared))
                if len(batch) == batch_size:
                    caption_batch(batch)
                    batch = []
            bar.update(counts["captioned"] + counts["failed"] + len(batch))
        if batch:
            caption_batch(batch)
            bar.update(counts["captioned"] + counts["failed"])
    finally:
        results.close()
    return counts

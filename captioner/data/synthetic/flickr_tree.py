"""Writes a Flickr8k- or Flickr30k-shaped tree from a COCO-format root (Shapes by default).

    python -m captioner.data.synthetic.flickr_tree OUT [--dataset flickr8k] [--format token] [--karpathy]
        [--source SHAPES_ROOT] [--sizes 6000 1000 1000] [--extra 91]

Flickr8k and Flickr30k cannot be downloaded here; this lays Shapes images and
captions out as the distributed files are (`captioner.data.flickr` documents the
layouts), so the Flickr readers, presets and commands run end to end on data
with known answers. Formats: `token` (Flickr8k: `Flicker8k_Dataset/`,
`Flickr8k_text/Flickr8k.token.txt` and the three `Flickr_8k.*Images.txt`;
Flickr30k: `flickr30k-images/`, `results_20130124.token`), `csv` (Flickr8k:
`Images/`, `captions.txt`; Flickr30k: `flickr30k_images/results.csv` beside
`flickr30k_images/flickr30k_images/`). `--karpathy` adds `dataset_<name>.json`.

File names follow Flickr's (`<photo id>_<10 hex>.jpg` for Flickr8k,
`<photo id>.jpg` for Flickr30k; photo ids past 2**31, as Flickr8k's are);
captions are capitalised with a spaced final period, as Flickr's. `--extra` more
images are captioned but in no split file, as Flickr8k's 91 are. The tree also
carries the real files' known flaws: Flickr8k's token file captions an image that
is not in the folder (`<name>.1`), and one row of the CSV re-packaging of
Flickr30k lacks the `|` before its comment. Images are hard links where the file
system allows, copies otherwise.
"""

import argparse
import csv
import hashlib
import json
import os
import shutil
import sys

from captioner.data import coco

FORMATS = ("token", "csv")


def photo_name(dataset, image_id):
    """A Flickr-style file name for a source image id."""
    photo_id = 3_000_000_000 + 104_729 * image_id
    if dataset == "flickr30k":
        return f"{photo_id}.jpg"
    return f"{photo_id}_{hashlib.sha1(str(image_id).encode()).hexdigest()[:10]}.jpg"


def flickr_caption(caption):
    """Flickr's style: a capital first letter and a spaced final period."""
    caption = caption.strip()
    return caption[:1].upper() + caption[1:] + " ."


def _place(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_text(path, lines):
    # No temporary name per file: the whole tree is written under OUT.partial and renamed when complete.
    with open(path, "w", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)


def write(out, source_root, dataset="flickr8k", form="token", karpathy=False, sizes=(6000, 1000, 1000), extra=0):
    """Writes the tree; returns `{"train"|"val"|"test"|"extra": [(file name, captions), ...]}`.

    Args:
        out: str, the tree's root (must not exist).
        source_root: str, a COCO-format root (Shapes) whose train, val and test images are used in that order.
        dataset: str, "flickr8k" or "flickr30k".
        form: str, "token" or "csv".
        karpathy: bool, also write Karpathy's `dataset_<dataset>.json`.
        sizes: `(train, val, test)` image counts.
        extra: int, further captioned images in no split (Flickr8k's split files leave 91 out).
    """
    if dataset not in ("flickr8k", "flickr30k") or form not in FORMATS:
        raise ValueError(f"dataset must be flickr8k or flickr30k and form one of {FORMATS}")
    if os.path.exists(out):
        raise FileExistsError(f"{out} exists: the tree is written into a new folder")
    pool = []
    for split in ("train", "val", "test"):
        try:
            pool.extend(coco.read_split(source_root, split).examples)
        except coco.MissingSplitError:
            continue
    wanted = sum(sizes) + extra
    if len(pool) < wanted:
        raise ValueError(f"{source_root} has {len(pool)} captioned images, fewer than the {wanted} asked for")
    named = [(photo_name(dataset, e.image_id), e) for e in pool[:wanted]]
    captioned = [(file_name, [flickr_caption(c) for c in example.captions[:5]]) for file_name, example in named]
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes), wanted]
    parts = {name: captioned[bounds[i]:bounds[i + 1]] for i, name in enumerate(("train", "val", "test", "extra"))}

    partial = out + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    if dataset == "flickr8k":
        images = os.path.join(partial, "Flicker8k_Dataset" if form == "token" else "Images")
        text = os.path.join(partial, "Flickr8k_text") if form == "token" else partial
    else:
        text = partial if form == "token" else os.path.join(partial, "flickr30k_images")
        images = os.path.join(partial, "flickr30k-images") if form == "token" else os.path.join(text,
                                                                                              "flickr30k_images")
    os.makedirs(images)
    os.makedirs(text, exist_ok=True)
    for file_name, example in named:
        _place(example.path, os.path.join(images, file_name))

    if form == "token":
        lines = [f"{name}#{k}\t{caption}" for name, captions in captioned for k, caption in enumerate(captions)]
        if dataset == "flickr8k" and captioned:  # as the real file: captions of an image that is not there
            lines[5:5] = [f"{captioned[0][0]}.1#{k}\t{c}" for k, c in enumerate(captioned[0][1])]
        _write_text(os.path.join(text, "Flickr8k.token.txt" if dataset == "flickr8k" else "results_20130124.token"),
                    lines)
    elif dataset == "flickr8k":
        with open(os.path.join(text, "captions.txt"), "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["image", "caption"])
            writer.writerows([name, caption] for name, captions in captioned for caption in captions)
    else:
        lines = ["image_name| comment_number| comment"]
        lines += [f"{name}| {k}| {caption}" for name, captions in captioned for k, caption in enumerate(captions)]
        if len(lines) > 20:  # the re-packaging's one row without the "|" before the comment
            name, rest = lines[20].split("| ", 1)
            lines[20] = f"{name}| {rest.replace('| ', ' ', 1)}"
        _write_text(os.path.join(text, "results.csv"), lines)
    if dataset == "flickr8k" and form == "token":
        for split, file in (("train", "trainImages"), ("val", "devImages"), ("test", "testImages")):
            _write_text(os.path.join(text, f"Flickr_8k.{file}.txt"), [name for name, _ in parts[split]])
    if karpathy:
        _write_karpathy(os.path.join(partial, f"dataset_{dataset}.json"), dataset, parts)
    os.replace(partial, out)
    return parts


def _write_karpathy(path, dataset, parts):
    """Karpathy's split file: `images[]` with `filename`, `imgid`, `sentids`, `sentences`, `split`; no filepath."""
    images, sentence_id = [], 0
    for split in ("train", "val", "test"):
        for file_name, captions in parts[split]:
            sentences = []
            for raw in captions:
                tokens = [t for t in raw.lower().replace(".", " ").split()]
                sentences.append({"tokens": tokens, "raw": raw, "imgid": len(images), "sentid": sentence_id})
                sentence_id += 1
            images.append({"sentids": [s["sentid"] for s in sentences], "imgid": len(images),
                           "sentences": sentences, "split": split, "filename": file_name})
    with open(path, "w") as handle:
        json.dump({"images": images, "dataset": dataset}, handle)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.data.synthetic.flickr_tree",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the tree's root (must not exist)")
    parser.add_argument("--dataset", default="flickr8k", choices=("flickr8k", "flickr30k"))
    parser.add_argument("--format", default="token", choices=FORMATS, dest="form")
    parser.add_argument("--karpathy", action="store_true", help="also write dataset_<dataset>.json")
    parser.add_argument("--source", help="COCO-format root to take images and captions from "
                                         "(default: the default Shapes dataset, written if absent)")
    parser.add_argument("--sizes", type=int, nargs=3, default=(6000, 1000, 1000), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--extra", type=int, default=None,
                        help="captioned images in no split (default: 91 for flickr8k, as the real split files)")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or (args.extra or 0) < 0:
        parser.error("--sizes must be at least 1 and --extra at least 0")
    extra = args.extra if args.extra is not None else (91 if args.dataset == "flickr8k" else 0)
    from captioner.data.synthetic import shapes

    source = shapes.default_source(args.source)
    try:
        parts = write(args.out, source, args.dataset, args.form, args.karpathy, tuple(args.sizes), extra)
    except (ValueError, FileExistsError, coco.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{split} {len(part)}" for split, part in parts.items())
    print(f"Wrote {args.dataset} ({args.form}{', Karpathy' if args.karpathy else ''}) to {args.out}: {counts} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writes a folder of captioned images, as people lay their own out, from a COCO-format root (Shapes by default).

    python -m captioner.data.synthetic.imagefolder_tree OUT [--layout hf-jsonl] [--source SHAPES_ROOT]
        [--sizes 40 4 4] [--captions-per-image 3]

Layouts (`LAYOUTS`; `captioner.data.imagefolder` reads them all):

    hf-jsonl     OUT/metadata.jsonl (`file_name`, `text`; a row per caption), images in OUT/images/; no split
    hf-splits    OUT/{train,validation,test}/metadata.csv (`file_name,text`), each beside its images
    csv-split    OUT/captions.csv (`image,caption,split`, split values in mixed case), images in OUT/photos/
    tsv          OUT/captions.tsv (`filename<TAB>caption`), images in OUT/pictures/; no split
    jsonl-lists  OUT/captions.jsonl (`{"image": ..., "captions": [...]}`, a row per image), images beside it; no split
    excel        OUT/captions.csv as Excel writes it in a European locale: a byte-order mark, CRLF line ends,
                 `Image;Caption`, captions holding `;`, `,`, quotes and line breaks (quoted); images in OUT/images/

Image files are `img_0001.jpg`, `img_0002.jpg`, ... (hard links to the source's where the file system allows,
copies otherwise); image k (from 0) has `captions_per_image - k % 2` captions (at least one). `write` returns
what a reader should find: `{split or None: [(file name as the metadata gives it, [captions as read])]}`.
"""

import argparse
import csv
import io
import json
import os
import shutil
import sys

from captioner.data import coco

LAYOUTS = ("hf-jsonl", "hf-splits", "csv-split", "tsv", "jsonl-lists", "excel")
SPLIT_LABELS = {"train": "Train", "val": "VAL", "test": "test"}  # csv-split: any case is read
HF_FOLDERS = {"train": "train", "val": "validation", "test": "test"}


def _place(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _excel_caption(caption, k):
    """The first caption of every image holds what Excel quotes: a `;`, a `,`, quotes and a line break."""
    return f'{caption}; seen "here",\r\nat last' if k == 0 else caption


def write(out, source_root, layout="hf-jsonl", sizes=(40, 4, 4), captions_per_image=3):
    """Writes the tree (see the module doc) into the new folder `out`; returns what a reader should find.

    Args:
        out: str, the tree's root (must not exist).
        source_root: str, a COCO-format root (Shapes) whose images and captions are used, train first.
        layout: str, one of `LAYOUTS`.
        sizes: `(train, val, test)` images; layouts without a split write their sum.
        captions_per_image: int, the most captions an image has.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if os.path.exists(out):
        raise FileExistsError(f"{out} exists: the tree is written into a new folder")
    pool = []
    for split in ("train", "val", "test"):
        try:
            pool.extend(coco.read_split(source_root, split).examples)
        except coco.MissingSplitError:
            continue
    if len(pool) < sum(sizes):
        raise ValueError(f"{source_root} has {len(pool)} captioned images, fewer than the {sum(sizes)} asked for")
    split_of = ["train"] * sizes[0] + ["val"] * sizes[1] + ["test"] * sizes[2]
    images = []  # (split, file name, source path, captions as written)
    for k, (split, example) in enumerate(zip(split_of, pool)):
        count = max(1, captions_per_image - k % 2)
        captions = [c.strip() for c in example.captions[:count]]
        if layout == "excel":
            captions = [_excel_caption(c, i) for i, c in enumerate(captions)]
        images.append((split, f"img_{k + 1:04d}.jpg", example.path, captions))

    partial = out + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    folder = {"hf-jsonl": "images", "csv-split": "photos", "tsv": "pictures", "jsonl-lists": "", "excel": "images"}
    found = {}
    if layout == "hf-splits":
        for split, hf in HF_FOLDERS.items():
            os.makedirs(os.path.join(partial, hf))
            rows = [(name, c) for s, name, _, captions in images if s == split for c in captions]
            _write_csv(os.path.join(partial, hf, "metadata.csv"), ["file_name", "text"], rows)
        for split, name, path, captions in images:
            _place(path, os.path.join(partial, HF_FOLDERS[split], name))
            found.setdefault(split, []).append((name, captions))
        os.replace(partial, out)
        return found
    sub = folder[layout]
    os.makedirs(os.path.join(partial, sub), exist_ok=True)
    named = [(split, f"{sub}/{name}" if sub else name, path, captions) for split, name, path, captions in images]
    for split, name, path, captions in named:
        _place(path, os.path.join(partial, name))
        key = split if layout == "csv-split" else None
        found.setdefault(key, []).append((name, [" ".join(c.split()) for c in captions]))
    if layout == "hf-jsonl":
        _write_lines(os.path.join(partial, "metadata.jsonl"),
                     [json.dumps({"file_name": name, "text": c}) for _, name, _, captions in named for c in captions])
    elif layout == "csv-split":
        _write_csv(os.path.join(partial, "captions.csv"), ["image", "caption", "split"],
                   [(name, c, SPLIT_LABELS[split]) for split, name, _, captions in named for c in captions])
    elif layout == "tsv":
        _write_lines(os.path.join(partial, "captions.tsv"),
                     ["filename\tcaption"] + [f"{name}\t{c}" for _, name, _, captions in named for c in captions])
    elif layout == "jsonl-lists":
        _write_lines(os.path.join(partial, "captions.jsonl"),
                     [json.dumps({"image": name, "captions": captions}) for _, name, _, captions in named])
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
        writer.writerow(["Image", "Caption"])
        writer.writerows((name, c) for _, name, _, captions in named for c in captions)
        with open(os.path.join(partial, "captions.csv"), "wb") as handle:
            handle.write(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    os.replace(partial, out)
    return found


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)


def _write_csv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.data.synthetic.imagefolder_tree",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the tree's root (must not exist)")
    parser.add_argument("--layout", default="hf-jsonl", choices=LAYOUTS)
    parser.add_argument("--source", help="COCO-format root to take images and captions from "
                                         "(default: the default Shapes dataset, written if absent)")
    parser.add_argument("--sizes", type=int, nargs=3, default=(40, 4, 4), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--captions-per-image", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.captions_per_image < 1:
        parser.error("--sizes and --captions-per-image must be at least 1")
    from captioner.data.synthetic import shapes

    source = shapes.default_source(args.source)
    try:
        found = write(args.out, source, args.layout, tuple(args.sizes), args.captions_per_image)
    except (ValueError, FileExistsError, coco.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{split or 'no split'} {len(part)}" for split, part in found.items())
    print(f"Wrote an imagefolder tree ({args.layout}) to {args.out}: {counts} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())

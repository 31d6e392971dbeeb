"""Check a dataset before training: what the readers find, what they skip and why, and what the captions look like.

    python -m captioner.data.check --dataset imagefolder DIR [--captions FILE] [--json]
    python -m captioner.data.check --dataset coco COCO --karpathy-json COCO/dataset_coco.json
    python -m captioner.data.check --dataset flickr8k FLICKR8K        (flickr30k, shapes likewise)

The data flags are training's (`--captions`, `--image-column`, `--caption-column`, `--separator`,
`--splits-file`, `--karpathy-json`, `--skip-missing-images`, `--skip-bad-images`), and the splits are
read as training reads them. The report: images and captions per split and where the split came from;
skipped rows by reason with their line numbers and examples, and images without a caption; captions per
image; caption lengths in words as the tokenizer splits them (percentiles, how many `--max-length` cuts);
the vocabulary at `--min-count` (default: the preset's; the imagefolder presets keep words seen twice) and
how much of the val and test words it covers; captions shared by several images; image formats, modes and
sizes from the files' headers (a sample of `--sample-images` on large sets); broken image files, found by
`captioner.data.image_check` as training finds them (its answers are cached: training then checks nothing
again). `--json` prints the report as JSON.

Exit status 0 when training can start on the data (warnings may be printed), 1 when it cannot: no
usable split, broken images without `--skip-bad-images` (imagefolder datasets skip them, counted),
missing images of a dataset whose reader stops on them. TensorFlow is imported only to split the
captions into words, once the data has been read.
"""

import argparse
import collections
import contextlib
import io
import json
import os
import sys

from captioner import config as config_lib
from captioner.console import HelpFormatter

SPLITS = ("train", "val", "test")
# The preset whose min_count, max_length and image size a dataset's report uses unless told.
PRESET_OF = {"shapes": "shapes", "coco": "coco-lstm", "flickr8k": "flickr8k-lstm", "flickr30k": "flickr8k-lstm",
             "imagefolder": "imagefolder-lstm"}
PERCENTILES = (5, 25, 50, 75, 95, 99)
FEW_VAL_IMAGES = 20
FOLDER_FIELDS = ("captions", "image_column", "caption_column", "separator", "splits_file")


def parser():
    p = argparse.ArgumentParser(prog="python -m captioner.data.check", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("root", nargs="?", metavar="DIR", help="the dataset root (or --data-root)")
    p.add_argument("--data-root", dest="data_root_flag", metavar="DIR", help="the dataset root, as training's flag")
    p.add_argument("--dataset", default="imagefolder", type=config_lib.choice(config_lib.DATASETS, "dataset"),
                   metavar="{" + ",".join(config_lib.DATASETS) + "}", help="what DIR holds (default: imagefolder)")
    p.add_argument("--preset", choices=list(config_lib.PRESETS),
                   help="the preset whose --min-count, --max-length and image size apply (default: the dataset's: "
                        + ", ".join(f"{k} {v}" for k, v in PRESET_OF.items()) + ")")
    helps = config_lib.field_help()
    for name in ("karpathy_json", *FOLDER_FIELDS):
        p.add_argument("--" + name.replace("_", "-"), help=helps[name])
    p.add_argument("--skip-missing-images", action="store_true", help=helps["skip_missing_images"])
    p.add_argument("--skip-bad-images", action="store_true", help=helps["skip_bad_images"])
    p.add_argument("--min-count", type=int, help="a word needs this many training occurrences to enter the "
                                                 "vocabulary (default: the preset's)")
    p.add_argument("--max-length", type=int, help="longest caption in words; longer ones are cut (default: the "
                                                  "preset's)")
    p.add_argument("--sample-images", type=int, default=1000, help="image headers read for formats and sizes")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def config_of(args):
    """The `Config` the data is read with (ValueError for flags training would refuse)."""
    overrides = {name: getattr(args, name) for name in ("karpathy_json", *FOLDER_FIELDS)
                 if getattr(args, name) is not None}
    for name in ("min_count", "max_length"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    base = config_lib.PRESETS[args.preset or PRESET_OF[args.dataset]]
    return config_lib.Config(**{**base, "preset": args.preset or PRESET_OF[args.dataset], "dataset": args.dataset,
                                "data_root": args.root or args.data_root_flag,
                                "skip_missing_images": args.skip_missing_images,
                                "skip_bad_images": args.skip_bad_images, **overrides}).validated()


def read(config, report):
    """`(splits, reading or None)` as training reads them; the reader's log lines go into `report["notes"]`."""
    from captioner.data import datasets, imagefolder
    from captioner.data.coco import DatasetError

    if config.data_root and not os.path.isdir(config.data_root):
        raise DatasetError(f"Dataset root {config.data_root} does not exist or is not a folder")
    root = os.path.abspath(datasets.existing_data_root(config))
    report["root"] = root
    if config.dataset == "imagefolder":
        reading = imagefolder.read(root, SPLITS, imagefolder.Options.of(config))
        report["notes"].extend(reading.notes)
        return reading.splits, reading
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            splits = datasets.read_splits(config.dataset, root, SPLITS, config.karpathy_json,
                                          config.skip_missing_images, optional=("test",))
    finally:
        report["notes"].extend(line for line in buffer.getvalue().splitlines() if line.strip())
    return splits, None


def _summary(values):
    return {"min": min(values), "mean": round(sum(values) / len(values), 2), "max": max(values)} if values else None


def reading_figures(reading, report):
    """Where the captions came from, and what was skipped (imagefolder)."""
    report["sources"] = [{"file": reading.relative(s.path), "format": s.table.describe(), "image_column":
                          s.image_column, "caption_column": s.caption_column, "split_column": s.split_column,
                          "rows": len(s.table.rows)} for s in reading.sources]
    report["split_from"] = reading.split_from
    report["rows"] = reading.rows
    def reasons(skipped):
        return {reason: {"count": len(lines), "lines": lines[:10],
                         "examples": [{"line": n, "value": v} for n, v in skipped.examples.get(reason, [])]}
                for reason, lines in skipped.lines.items()}

    report["skipped_rows"] = {reading.relative(s.path): reasons(s.skipped) for s in reading.sources if s.skipped}
    report["uncaptioned_images"] = {"count": len(reading.uncaptioned),
                                    "examples": [reading.relative(p) for p in reading.uncaptioned[:5]]}


def split_figures(splits, report):
    report["splits"] = {name: {"images": len(split.examples), "captions": sum(len(e.captions) for e in split.examples),
                               "captions_per_image": _summary([len(e.captions) for e in split.examples]),
                               "missing_images_skipped": split.skipped}
                        for name, split in splits.items()}
    counts = collections.Counter(len(e.captions) for split in splits.values() for e in split.examples)
    report["captions_per_image"] = {str(k): counts[k] for k in sorted(counts)}


def caption_figures(splits, config, report):
    """Lengths, vocabulary and its coverage, shared captions: words as the caption tokenizer splits them."""
    import numpy as np

    from captioner import console

    console.quiet_tensorflow()
    from captioner.evaluation.metrics import words_of  # TensorFlow, here only

    order = [(name, e.image_id, c) for name, split in splits.items() for e in split.examples for c in e.captions]
    words = words_of([c for _, _, c in order])
    lengths = np.array([len(w) for w in words])
    report["caption_length"] = {**{f"p{p}": int(np.percentile(lengths, p)) for p in PERCENTILES},
                                "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2),
                                "no_words": int((lengths == 0).sum()),
                                "longer_than_max_length": int((lengths > config.max_length).sum()),
                                "max_length": config.max_length}
    counts = collections.Counter(w for (name, _, _), ws in zip(order, words) if name == "train" for w in ws)
    vocabulary = {w for w, n in counts.items() if n >= config.min_count}
    coverage = {}
    for name in ("val", "test"):
        tokens = [w for (split, _, _), ws in zip(order, words) if split == name for w in ws]
        if tokens:
            coverage[name] = round(sum(w in vocabulary for w in tokens) / len(tokens), 4)
    report["vocabulary"] = {"min_count": config.min_count, "words": len(vocabulary),
                            "distinct_train_words": len(counts), "coverage_of_words": coverage}
    images_of = collections.defaultdict(set)
    for (name, image_id, _), ws in zip(order, words):
        images_of[" ".join(ws)].add((name, image_id))
    shared = sorted(((text, len(ids)) for text, ids in images_of.items() if len(ids) > 1 and text),
                    key=lambda item: (-item[1], item[0]))
    report["duplicate_captions"] = {"texts": len(shared), "images": sum(n for _, n in shared),
                                    "most": [{"caption": t, "images": n} for t, n in shared[:5]]}


def image_figures(splits, config, report, sample_size):
    """Formats, modes and sizes from the headers of (a sample of) the images."""
    from PIL import Image

    paths = sorted({e.path for split in splits.values() for e in split.examples})
    sample = paths[::max(1, -(-len(paths) // sample_size))] if sample_size else []
    formats, modes, widths, heights = collections.Counter(), collections.Counter(), [], []
    for path in sample:
        try:
            with Image.open(path) as image:
                formats[image.format or "?"] += 1
                modes[image.mode] += 1
                widths.append(image.size[0])
                heights.append(image.size[1])
        except (OSError, SyntaxError, ValueError):
            continue  # named by the image check
    def spread(values):
        return {"min": min(values, default=None), "median": sorted(values)[len(values) // 2] if values else None,
                "max": max(values, default=None)}

    small = sum(min(w, h) < config.image_size for w, h in zip(widths, heights))
    report["images"] = {"files": len(paths), "headers_read": len(widths), "formats": dict(formats.most_common()),
                        "modes": dict(modes.most_common()), "width": spread(widths), "height": spread(heights),
                        "smaller_than_encoder_input": small, "encoder_input": config.image_size}


def broken_figures(splits, reading, config, report):
    """Broken image files: the imagefolder reader left them out; other readers' splits are checked here."""
    from captioner.data import image_check

    if reading is not None:
        broken = reading.broken
    else:
        broken = [p for split in {id(s): s for s in splits.values()}.values()
                  for p in image_check.check([e.path for e in split.examples], f"Checking the {split.name} images")]
    report["broken_images"] = {"count": len(broken), "files": [{"path": p.path, "reason": p.reason} for p in broken]}
    if broken and reading is None and not config.skip_bad_images:
        report["fatal"].append(f"{len(broken)} image files cannot be decoded: training stops on them; replace or "
                               f"delete them, or pass --skip-bad-images to leave them out")


def judge(report, splits):
    warn = report["warnings"].append
    if "test" not in splits:
        warn("no test split: training reports its final metrics on the val split, which also chose the checkpoint")
    val = report["splits"].get("val", {}).get("images", 0)
    if val and val < FEW_VAL_IMAGES:
        warn(f"the val split has {val} images: early stopping and the decoding search rest on few captions")
    skipped = sum(r["count"] for reasons in report.get("skipped_rows", {}).values() for r in reasons.values())
    if skipped:
        warn(f"{skipped} of the {report['rows']} rows are skipped (see above)")
    if report.get("uncaptioned_images", {}).get("count"):
        warn(f"{report['uncaptioned_images']['count']} images in the folders read have no caption and are ignored")
    if report["broken_images"]["count"] and not report["fatal"]:
        warn(f"{report['broken_images']['count']} broken image files are left out")
    lengths = report["caption_length"]
    if lengths["longer_than_max_length"]:
        warn(f"{lengths['longer_than_max_length']} captions are longer than max_length {lengths['max_length']} "
             f"words and are cut in training (--max-length)")
    if lengths["no_words"]:
        warn(f"{lengths['no_words']} captions have no words (punctuation only): they teach nothing")
    for name, share in report["vocabulary"]["coverage_of_words"].items():
        if share < 0.9:
            warn(f"the vocabulary covers {share:.1%} of the {name} words: the rest become <unk> "
                 f"(a lower --min-count keeps more, or the captions vary more than the images)")


def build(args, config):
    """The report (a dict) and the exit status."""
    from captioner.data.coco import DatasetError

    report = {"dataset": args.dataset, "root": None, "preset": config.preset, "min_count": config.min_count,
              "max_length": config.max_length, "notes": [], "warnings": [], "fatal": []}
    try:
        splits, reading = read(config, report)
    except (DatasetError, ValueError, OSError) as error:
        report["fatal"].append(str(error))
        return report, 1
    if reading is not None:
        reading_figures(reading, report)
    split_figures(splits, report)
    broken_figures(splits, reading, config, report)
    caption_figures(splits, config, report)
    image_figures(splits, config, report, args.sample_images)
    judge(report, splits)
    return report, 1 if report["fatal"] else 0


def _lines_text(lines):
    return ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")


def text(report, status):
    """The report as a person reads it."""
    out = [f"{report['dataset']} dataset at {report['root'] or '?'} (preset {report['preset']}: min_count "
           f"{report['min_count']}, max_length {report['max_length']})"]
    if report["fatal"] and "splits" not in report:
        out += [f"error: {message}" for message in report["fatal"]]
        out.append("Verdict: training cannot start on this data (exit 1)")
        return "\n".join(out)
    for source in report.get("sources", []):
        columns = f"image column {source['image_column']!r}, caption column {source['caption_column']!r}"
        columns += f", split column {source['split_column']!r}" if source["split_column"] else ""
        out.append(f"  {source['file']}: {source['format']}, {source['rows']} rows; {columns}")
    if "split_from" in report:
        out.append(f"  {report['split_from']}")
    out += ["", f"  {'split':<6} {'images':>7} {'captions':>9}  captions per image"]
    for name, split in report["splits"].items():
        per = split["captions_per_image"]
        out.append(f"  {name:<6} {split['images']:>7} {split['captions']:>9}  {per['mean']:.2f} "
                   f"({per['min']}-{per['max']})")
    out.append("  images with k captions: " + ", ".join(f"{k}: {n}" for k, n in report["captions_per_image"].items()))
    if "skipped_rows" in report:
        skipped = sum(r["count"] for reasons in report["skipped_rows"].values() for r in reasons.values())
        out += ["", f"Skipped rows: {skipped} of {report['rows']}"]
        for file, reasons in report["skipped_rows"].items():
            out.append(f"  {file}:")
            for reason, figures in reasons.items():
                lines = figures["lines"]
                out.append(f"    {figures['count']} {reason} (line{'s' if figures['count'] > 1 else ''} "
                           f"{_lines_text(lines)})")
                out += [f"        line {e['line']}: {e['value']}" for e in figures["examples"]]
        uncaptioned = report["uncaptioned_images"]
        out.append(f"Images without a caption (ignored): {uncaptioned['count']}"
                   + (f", e.g. {', '.join(uncaptioned['examples'])}" if uncaptioned["count"] else ""))
    broken = report["broken_images"]
    out.append(f"Broken image files: {broken['count']}" + (" (left out)" if broken["count"] and "sources" in report
                                                          else ""))
    out += [f"  {f['path']}: {f['reason']}" for f in broken["files"][:10]]
    lengths, vocabulary = report["caption_length"], report["vocabulary"]
    out += ["", "Caption length in words: " + ", ".join(f"p{p} {lengths[f'p{p}']}" for p in PERCENTILES)
            + f", max {lengths['max']}, mean {lengths['mean']}; {lengths['longer_than_max_length']} longer than "
              f"max_length {lengths['max_length']}"]
    coverage = ", ".join(f"{share:.1%} of the {name} words" for name, share in vocabulary["coverage_of_words"].items())
    times = f"{vocabulary['min_count']} time{'s' if vocabulary['min_count'] > 1 else ''}"
    out.append(f"Vocabulary: {vocabulary['words']} words seen at least {times} in the train captions (of "
               f"{vocabulary['distinct_train_words']} distinct)" + (f"; it covers {coverage}" if coverage else ""))
    shared = report["duplicate_captions"]
    out.append(f"Captions shared by several images: {shared['texts']} texts"
               + (", most: " + "; ".join(f"\"{m['caption']}\" ({m['images']} images)" for m in shared["most"][:3])
                  if shared["most"] else ""))
    images = report["images"]
    out.append(f"Images: {images['files']} files, headers of {images['headers_read']} read: "
               + ", ".join(f"{k} {n}" for k, n in images["formats"].items()) + "; "
               + ", ".join(f"{k} {n}" for k, n in images["modes"].items())
               + (f"; width {images['width']['min']}-{images['width']['max']} (median {images['width']['median']}), "
                  f"height {images['height']['min']}-{images['height']['max']} (median {images['height']['median']}); "
                  f"{images['smaller_than_encoder_input']} smaller than the encoder input "
                  f"({images['encoder_input']} px)" if images["headers_read"] else ""))
    if report["notes"]:
        out += ["", "Reader notes:"] + [f"  {note}" for note in report["notes"]]
    if report["warnings"]:
        out += ["", "Warnings:"] + [f"  - {w}" for w in report["warnings"]]
    if report["fatal"]:
        out += ["", "Fatal:"] + [f"  - {f}" for f in report["fatal"]]
    out += ["", f"Verdict: {'training cannot start on this data' if status else 'ready to train'} (exit {status})"]
    return "\n".join(out)


def main(argv=None):
    args = parser().parse_args(argv)
    if args.root and args.data_root_flag and os.path.abspath(args.root) != os.path.abspath(args.data_root_flag):
        parser().error("give the dataset root once: DIR or --data-root")
    if args.sample_images < 0:
        parser().error("--sample-images must be 0 or more")
    try:
        config = config_of(args)
    except ValueError as error:
        parser().error(str(error))
    report, status = build(args, config)
    report["exit_status"] = status
    print(json.dumps(report, indent=1, ensure_ascii=False) if args.json else text(report, status))
    return status


if __name__ == "__main__":
    sys.exit(main())

"""A run's evaluation as one self-contained HTML page a person can look at, offline.

    python -m captioner.report RUN [-o RUN/report.html] [--split test] [--examples 12]

The page holds: the run (data, encoder, decoder, preset and the fields that
differ from it, decoding default, wall time), its learning curves from
`log.csv`, the metrics table labelled with its scale, tokenizer and split, the
decoding-default search, genericness and CHAIR; then galleries of the best, the
worst (by per-image CIDEr-D) and random images of the split, each with its
caption, references, per-image scores, hallucinated objects where CHAIR applies
and its attention figure. Every image is embedded (data: URIs) and no style,
script or font comes from elsewhere, so the file opens anywhere without a
network. The numbers are those of the evaluation folder it is built from
(`python -m captioner.evaluate`'s), which it runs first if there is none.
"""

import base64
import csv
import dataclasses
import datetime
import html
import io
import os
import random

import numpy as np
from PIL import Image

from captioner import config as config_lib
from captioner import runs
from captioner.evaluation import coco_eval
from captioner.inference import figures

THUMBNAIL = 256


def _data_uri(data, kind):
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _thumbnail(path):
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    return _data_uri(buffer.getvalue(), "image/jpeg")


def _figure_uri(figure, dpi=60, photo=True):
    """A figure embedded: as JPEG when it shows photos (a tenth of the PNG's bytes), else as PNG."""
    data = figures.png_bytes(figure, dpi=dpi)
    if not photo:
        return _data_uri(data, "image/png")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=80)
    return _data_uri(buffer.getvalue(), "image/jpeg")


def _table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value, digits=4):
    return "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def run_rows(run_dir, config, metrics):
    """(field, value) rows describing the run."""
    preset = config_lib.Config(**config_lib.PRESETS.get(config.preset, {}))
    overrides = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                 if f.name not in ("preset", "data_root", "feature_cache_dir", "karpathy_json")
                 and getattr(config, f.name) != getattr(preset, f.name)}
    rows = [("run folder", os.path.abspath(run_dir)), ("dataset", f"{config.dataset} at {config.data_root}"),
            ("encoder", f"{config.encoder} ({'trained' if config.train_encoder else 'frozen'}, "
                        f"weights {config.encoder_weights or 'trained from scratch'}), {config.image_size} px"),
            ("decoder", config.decoder), ("preset", config.preset),
            ("fields changed from the preset", ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "none")]
    if metrics.get("stage"):
        rows.append(("stage", f"{metrics['stage']} from {metrics.get('parent')}"))
    default = metrics.get("default_decoding") or {}
    if default:
        from captioner.decoding.settings import Decoding

        known = {field.name for field in dataclasses.fields(Decoding)}
        described = Decoding(**{k: v for k, v in default.items() if k in known}).describe()
        rows.append(("decoding default", f"{described} (chosen on {default.get('chosen_on')})"))
    if metrics.get("wall_seconds") is not None:
        rows.append(("training wall time", f"{metrics['wall_seconds'] / 60:.1f} min "
                                           f"(fit {metrics.get('train_seconds', 0) / 60:.1f} min)"))
    return rows


def metric_rows(evaluation):
    """(metric, value, how) rows of an evaluation's metrics.json."""
    tokenizer = evaluation.get("tokenizer", "?")
    rows = [(coco_eval.LABELS[name], _number(evaluation.get(name)), f"COCO caption evaluation, {tokenizer}")
            for name in coco_eval.METRICS]
    rows += [(f"BLEU-{n} (nltk)", _number(evaluation.get(f"nltk_bleu_{n}")), "nltk corpus_bleu, caption tokenizer")
             for n in range(1, 5)]
    for name, label in (("object_f1", "object F1"), ("attention_pointing", "attention pointing")):
        if name in evaluation:
            rows.append((label, _number(evaluation[name]), "Shapes spec"))
    if "chair_i" in evaluation:
        rows.append(("CHAIR-i", _number(evaluation["chair_i"]),
                     f"{evaluation['chair_hallucinated_mentions']} of {evaluation['chair_mentions']} mentions; "
                     f"{evaluation.get('chair_vocabulary', '')} (lower is better)"))
        rows.append(("CHAIR-s", _number(evaluation["chair_s"]),
                     f"{evaluation['chair_hallucinated_captions']} of {evaluation['chair_captions']} captions"))
    elif evaluation.get("chair_left_out"):
        rows.append(("CHAIR", "left out", evaluation["chair_left_out"]))
    return rows


def _log_rows(run_dir):
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def pick_examples(per_image, count, seed=0):
    """`[(heading, [image_id, ...])]`: the best, the worst (by per-image CIDEr-D) and random images."""
    order = sorted(per_image, key=lambda i: -per_image[i].get("coco_cider_d", 0.0))
    each = max(1, count // 3)
    best, worst = order[:each], order[::-1][:each]
    rest = [i for i in order if i not in set(best) | set(worst)]
    chosen = random.Random(seed).sample(rest, min(each, len(rest)))
    return [("Best (highest per-image CIDEr-D)", best), ("Worst (lowest per-image CIDEr-D)", worst),
            ("Random", chosen)]


def gallery(model, split, per_image, groups, decoding, batch_size=32, max_length=None):
    """HTML of the galleries: each image decoded again (as the evaluation decoded it), with attention."""
    from captioner.evaluation import scoring

    by_id = {e.image_id: e for e in split.examples}
    wanted = [by_id[i] for _, ids in groups for i in ids if i in by_id]
    decoded = {o["image_id"]: o for o in scoring.caption_settings(
        model, wanted, batch_size, [decoding], with_attention=True, progress=False, max_length=max_length)[decoding]}
    parts = []
    for heading, ids in groups:
        cards = []
        for image_id in ids:
            example, output, scores = by_id[image_id], decoded[image_id], per_image[image_id]
            pixels = np.asarray(Image.open(example.path).convert("RGB"))
            attention = figures.attention_figure(pixels, output["caption"], output["attention"],
                                                 model.encoder.grid_shape)
            references = "".join(f"<li>{html.escape(r)}</li>" for r in example.captions)
            hallucinated = scores.get("chair_hallucinated")
            cards.append(
                f'<div class="card"><img class="thumb" src="{_thumbnail(example.path)}" alt="image {image_id}">'
                f'<p class="caption">{html.escape(output["caption"] or "(empty)")}</p>'
                f'<p class="scores">image {image_id} &middot; CIDEr-D {_number(scores.get("coco_cider_d"), 3)} '
                f'&middot; BLEU-4 {_number(scores.get("coco_bleu_4"), 3)}'
                + (f' &middot; hallucinated: {html.escape(", ".join(hallucinated))}' if hallucinated else "")
                + f'</p><details><summary>references</summary><ul>{references}</ul></details>'
                f'<img class="attention" src="{_figure_uri(attention)}" alt="attention of each word"></div>')
        parts.append(f"<h3>{html.escape(heading)}</h3><div class=\"gallery\">{''.join(cards)}</div>")
    return "".join(parts)


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f0f0; } .gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; padding: 8px; width: 560px; } .thumb { max-width: 256px; }
.attention { width: 100%; } .caption { font-weight: bold; } .scores { color: #555; font-size: 90%; }
.note { color: #555; font-size: 90%; }
"""


def render(run_dir, evaluation, per_image, split, model, examples=12, decoding=None, max_length=None):
    """The report page (str) of a run and one of its evaluations."""
    config = runs.load_config(run_dir)
    metrics_path = os.path.join(run_dir, runs.METRICS)
    metrics = runs.read_json(metrics_path) if os.path.exists(metrics_path) else {}
    decoding = decoding or model.default_decoding
    sections = [f"<h1>Run report: {html.escape(os.path.basename(os.path.abspath(run_dir)))}</h1>",
                f"<p class=\"note\">Written {datetime.datetime.now():%Y-%m-%d %H:%M} by python -m captioner.report; "
                f"{html.escape(evaluation.get('split', '?'))} split, {evaluation.get('images')} images, decoded "
                f"{html.escape(evaluation.get('decoding', '?'))}.</p>",
                "<h2>The run</h2>", _table(("", ""), run_rows(run_dir, config, metrics))]
    rows = _log_rows(run_dir)
    if rows:
        sections += ["<h2>Learning curves</h2>",
                     f'<img src="{_figure_uri(figures.learning_curves(rows), 80, photo=False)}" alt="learning curves">']
    sections += ["<h2>Metrics</h2>",
                 f"<p class=\"note\">Scale: {html.escape(evaluation.get('scale', coco_eval.SCALE))}. Split: "
                 f"{html.escape(str(evaluation.get('split')))} ({evaluation.get('images')} images). Tokenizer of the "
                 f"COCO metrics: {html.escape(str(evaluation.get('tokenizer')))}.</p>",
                 _table(("metric", "value", "how"), metric_rows(evaluation))]
    search_path = os.path.join(run_dir, "decoding.json")
    if os.path.exists(search_path):
        search = runs.read_json(search_path)
        table = [(r.get("beam_size"), r.get("alpha"), r.get("no_repeat_ngram_size", ""), _number(r["cider_d"]),
                  _number(r["nltk_bleu_4"])) for r in search.get("table", [])]
        sections += ["<h2>Decoding-default search</h2>",
                     f"<p class=\"note\">On {search.get('images')} {html.escape(str(search.get('split')))} images; "
                     f"{html.escape(str(search.get('metric', '')))}.</p>",
                     _table(("beam", "alpha", "no repeated n-gram", "val CIDEr-D", "val BLEU-4 (nltk)"), table)]
    generic = evaluation.get("genericness") or {}
    if generic:
        sections += ["<h2>Genericness</h2>", _table(
            ("decoding", "distinct captions / images", "words used", "copied from train", "repeated bigram"),
            [(label, _number(g["distinct_captions"]), g["vocabulary_used"], _number(g["copied_from_train"]),
              _number(g["repeated_bigram"])) for label, g in generic.items()])]
    groups = pick_examples(per_image, examples)
    sections += ["<h2>Examples</h2>", gallery(model, split, per_image, groups, decoding, max_length=max_length)]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>captioner report: {html.escape(os.path.basename(os.path.abspath(run_dir)))}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")


def decoding_of(evaluation):
    """The `Decoding` an evaluation's `metrics.json` was decoded with."""
    from captioner.decoding.settings import Decoding

    return Decoding.from_json({"beam_size": evaluation.get("beam_size", 1), "alpha": evaluation.get("length_penalty", 0),
                               **evaluation.get("decoding_settings", {})})


def write_report(run_dir, output=None, split_name="test", examples=12, batch_size=64, use_java=None,
                 progress=True, evaluation_dir=None, model=None):
    """Writes the report of a run to `output` (default `RUN_DIR/report.html`) and returns its path.

    Its numbers come from the evaluation folder of the split (`evaluation_dir`, default the one under the
    model's decoding default, `RUN_DIR/eval-SPLIT-DECODING`), which is made first when there is none; its
    galleries are decoded as that evaluation was. `model`: the run's model if already loaded.
    """
    import captioner
    from captioner import files
    from captioner.console import log
    from captioner.data import datasets, imagefolder
    from captioner.evaluation import results_files, run_evaluation

    model = model or captioner.load(run_dir, quiet=not progress)
    evaluation_dir = evaluation_dir or os.path.join(run_dir, f"eval-{split_name}-{model.default_decoding.label()}")
    metrics_path = os.path.join(evaluation_dir, "metrics.json")
    if os.path.exists(metrics_path) and runs.read_json(metrics_path).get("split") == split_name:
        evaluation = runs.read_json(metrics_path)
        per_image = {row["image_id"]: row for row in runs.read_json(os.path.join(evaluation_dir, "per_image.json"))}
        if progress:
            log(f"Report from the evaluation in {evaluation_dir}")
    else:
        if progress:
            log(f"No evaluation of the {split_name} split yet: evaluating into {evaluation_dir}")
        evaluation, rows, predictions, _ = run_evaluation.evaluate_run(
            run_dir, split_name, batch_size=batch_size, use_java=use_java, progress=progress)
        results_files.write(evaluation_dir, evaluation, rows, predictions)
        per_image = rows
    config = runs.load_config(run_dir)
    # The split as the evaluation read it (its metrics.json says how; older ones: the run's own data).
    root = evaluation.get("data_root") or datasets.existing_data_root(config)
    dataset = evaluation.get("dataset", config.dataset)
    own = root == config.data_root and dataset == config.dataset
    if "imagefolder_options" in evaluation:
        options = imagefolder.Options(**evaluation["imagefolder_options"])
    else:
        options = imagefolder.Options.of(config, run_dir) if own and dataset == "imagefolder" else None
    karpathy = evaluation.get("karpathy_json") or (config.karpathy_json if own else None)
    split = datasets.read_split(dataset, root, split_name, karpathy, config.skip_missing_images, options=options)
    split = dataclasses.replace(split, examples=[e for e in split.examples if e.image_id in per_image])
    page = render(run_dir, evaluation, per_image, split, model, examples, decoding_of(evaluation),
                  max_length=evaluation.get("max_length"))
    output = output or os.path.join(run_dir, "report.html")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with files.replacing(output) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(page)
    return output

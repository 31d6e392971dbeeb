"""COCO caption metrics, computed as the COCO caption evaluation computes them.

Captions and references are tokenised by pycocoevalcap's PTB tokenizer
(Stanford CoreNLP, Java), then scored by its BLEU-1..4, METEOR (Java), ROUGE-L
and CIDEr-D scorers: the numbers of `pycocoevalcap.eval.COCOEvalCap`, without
SPICE (it needs Java 8 and downloads models). Without Java, the PTB tokenizer
and METEOR cannot run: the other metrics are computed on a Python
tokenisation, and the result says so in `tokenizer`.

Scale: every score is the fraction pycocoevalcap returns (BLEU, METEOR, ROUGE-L
in 0..1; CIDEr-D is unbounded, where papers' "CIDEr 100" is 1.0 here).
"""

import contextlib
import io
import shutil
import sys
import time

from captioner.console import silenced_stderr
from captioner.data.coco import DatasetError

SCALE = "fractions as pycocoevalcap returns them (0-1; CIDEr-D unbounded, 1.0 = '100' in papers)"
METRICS = ("coco_bleu_1", "coco_bleu_2", "coco_bleu_3", "coco_bleu_4", "coco_meteor", "coco_rouge_l",
           "coco_cider_d")
# What an empty caption is scored as: the COCO scorers need a word.
EMPTY = "<empty>"
LABELS = {"coco_bleu_1": "BLEU-1", "coco_bleu_2": "BLEU-2", "coco_bleu_3": "BLEU-3", "coco_bleu_4": "BLEU-4",
          "coco_meteor": "METEOR", "coco_rouge_l": "ROUGE-L", "coco_cider_d": "CIDEr-D"}


def java_available():
    return shutil.which("java") is not None


def _python_tokenize(captions_for_image):
    """A stand-in for the PTB tokenizer when Java is missing: the caption tokenizer's PTB-like words.

    `captioner.data.tokenizer.standardize` reproduces PTB's tokens and drops
    punctuation as pycocoevalcap does (see its docstring for the rare forms
    where the two differ), so the scores stay close to the official ones.
    """
    from captioner.evaluation.metrics import words_of

    keys = [(image_id, k) for image_id, entries in captions_for_image.items() for k in range(len(entries))]
    words = words_of([captions_for_image[i][k]["caption"] for i, k in keys])
    tokenized = {image_id: [] for image_id in captions_for_image}
    for (image_id, _), tokens in zip(keys, words):
        tokenized[image_id].append(" ".join(tokens))
    return tokenized


def _quietly(fn, *args):
    """pycocoevalcap prints progress to stdout, and its Java tokenizer to the process's stderr: keep both out
    of our output (the scores are what is reported)."""
    with contextlib.redirect_stdout(io.StringIO()), silenced_stderr():
        return fn(*args)


class _StageTimes:
    """Reports each scorer's seconds on stderr when a split is large enough for them to take a while."""

    LARGE = 1000

    def __init__(self, images):
        self.images, self.last = images, time.time()

    def __call__(self, stage):
        if self.images >= self.LARGE:
            print(f"COCO scorers, {self.images} images: {stage} done ({time.time() - self.last:.1f} s)",
                  file=sys.stderr, flush=True)
        self.last = time.time()


def score(references, predictions, use_java=None):
    """COCO caption metrics of `predictions` against `references`.

    Args:
        references: dict image_id -> list of str, the reference captions.
        predictions: dict image_id -> str, one caption per image (same ids).
        use_java: bool or None, run the Java parts (None: when `java` is on PATH).

    Returns:
        `(metrics, per_image)`: `metrics` maps `coco_*` names (see `METRICS`) to
        corpus scores plus `tokenizer`; `per_image` maps image_id -> {metric: score}.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(predictions):
        raise ValueError("references and predictions must cover the same image ids")
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    missing_java = use_java is None and not java_available()
    use_java = java_available() if use_java is None else use_java
    report = _StageTimes(len(predictions))
    gts = {i: [{"caption": c} for c in references[i]] for i in predictions}
    res = {i: [{"caption": predictions[i]}] for i in predictions}
    if use_java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        gts, res = _quietly(tokenizer.tokenize, gts), _quietly(tokenizer.tokenize, res)  # Java's lines dropped
        report("PTB tokenizer")
    else:
        if missing_java:  # asked for (--no-java), it is said where it was asked
            print("Java was not found: the PTB tokenizer and METEOR need it. Reporting BLEU, ROUGE-L and CIDEr-D "
                  "on a Python tokenisation instead; they can differ slightly from the official numbers.",
                  file=sys.stderr)
        gts, res = _python_tokenize(gts), _python_tokenize(res)
        report("Python tokenisation")
    scorers = [(Bleu(4), ["coco_bleu_1", "coco_bleu_2", "coco_bleu_3", "coco_bleu_4"]),
               (Rouge(), ["coco_rouge_l"]), (Cider(), ["coco_cider_d"])]
    if use_java:
        from pycocoevalcap.meteor.meteor import Meteor

        scorers.insert(1, (Meteor(), ["coco_meteor"]))
    metrics, per_image = {}, {i: {} for i in gts}
    for scorer, names in scorers:
        corpus, per = _quietly(scorer.compute_score, gts, res)
        if len(names) == 1:
            corpus, per = [corpus], [per]
        for name, value, values in zip(names, corpus, per):
            metrics[name] = float(value)
            for image_id, v in zip(gts.keys(), values):
                per_image[image_id][name] = float(v)
        if hasattr(scorer, "meteor_p"):
            scorer.meteor_p.kill()  # pycocoevalcap leaves its Java process running
        report(type(scorer).__name__)
    metrics["tokenizer"] = "PTB (Stanford CoreNLP)" if use_java else "python (no Java: not PTB)"
    return metrics, per_image


def check_results(results, references, source):
    """Validates a COCO results list `[{"image_id", "caption"}]`; returns image_id -> caption.

    An empty caption (a model may write one) is scored as `EMPTY`, as
    `captioner.evaluation.scoring.evaluate_model` scores it, so that a results
    file it wrote scores the same again. Raises `DatasetError` naming `source`
    for a malformed list, unknown image ids, duplicate ids and captions that are not text.
    """
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise DatasetError(f"{source}: a COCO results file is a list of {{\"image_id\", \"caption\"}} objects")
    predictions, unknown, not_text, duplicates = {}, [], [], []
    for position, entry in enumerate(results):
        if "image_id" not in entry or "caption" not in entry:
            raise DatasetError(f"{source}: entry {position} lacks 'image_id' or 'caption'")
        image_id, caption = entry["image_id"], entry["caption"]
        if image_id not in references:
            unknown.append(image_id)
        elif not isinstance(caption, str):
            not_text.append(image_id)
        elif image_id in predictions:
            duplicates.append(image_id)
        else:
            predictions[image_id] = caption if caption.strip() else EMPTY
    if unknown:
        raise DatasetError(f"{source}: {len(unknown)} results name image ids that the annotations do not have, "
                           f"first: {unknown[:5]}")
    if not_text:
        raise DatasetError(f"{source}: {len(not_text)} results have a caption that is not text, first image ids: "
                           f"{not_text[:5]}")
    if duplicates:
        raise DatasetError(f"{source}: {len(duplicates)} image ids have more than one result, first: "
                           f"{duplicates[:5]}")
    if not predictions:
        raise DatasetError(f"{source}: no results")
    return predictions

"""Choosing a model's decoding default on validation data, not by hard-coding one.

At the end of training (cross-entropy and self-critical alike) a small grid of
beam sizes and length penalties is decoded on validation images; the setting
with the best validation CIDEr-D becomes the model's `default_decoding`
(saved in `model.keras`), and the search is written to `RUN_DIR/decoding.json`.
`Captioner.generate`, `captioner.caption`, `captioner.evaluate` and
`captioner.export` use it unless told otherwise.

Why: on Shapes, beam 3 with no length penalty *lowers* object recall against
greedy decoding (it favours short generic captions), while alpha 0.6 raises
it; which is best depends on the model, so it is measured, per model.
"""

import dataclasses
import os
import sys

from captioner.decoding.settings import Decoding
from captioner.evaluation import coco_eval, scoring
from captioner.evaluation import metrics as metrics_lib
from captioner import runs

# Beam sizes and length penalties, and one setting that forbids a caption to repeat a 3-gram ("a red circle
# and a red circle"), kept only where it raises validation CIDEr-D (Shapes' "in the top left corner and
# a blue square in the top right corner" repeats "in the top" as it should).
GRID = (Decoding(1), Decoding(3, 0.0), Decoding(3, 0.6), Decoding(3, 1.0), Decoding(5, 0.6), Decoding(5, 1.0),
        Decoding(3, 0.6, no_repeat_ngram_size=3))
FILE_NAME = "decoding.json"


def choose(captioner, split, batch_size, max_images=500, grid=GRID, progress=True, cache=None):
    """Decodes the first `max_images` images of `split` with each setting of `grid`; returns the record.

    One pass over the images: each batch is encoded once (or read from
    `cache`, the split's feature cache) and decoded with every setting. The best
    validation CIDEr-D wins (pycocoevalcap's scorer on the caption tokenizer's
    words; references and document frequencies from these images); a tie goes
    to the cheaper setting (smaller beam, then earlier in `grid`).

    Returns:
        dict with `beam_size`, `alpha`, `split`, `images`, `metric`, and `table`: one row per
        setting with its CIDEr-D, nltk BLEU-4 and decoding seconds.
    """
    split = dataclasses.replace(split, examples=split.examples[:max_images])
    references = [list(e.captions) for e in split.examples]
    seconds = {}
    outputs = scoring.caption_settings(captioner, split.examples, batch_size, list(grid), progress=False,
                                       cache=cache, seconds=seconds)
    table = []
    for setting in grid:
        captions = [o["caption"] or coco_eval.EMPTY for o in outputs[setting]]
        cider, _ = metrics_lib.cider_d(references, captions)
        bleu = metrics_lib.nltk_corpus_bleu(references, captions)["nltk_bleu_4"]
        table.append({**setting.to_json(), "beam_size": setting.beam_size, "alpha": setting.alpha,
                      "cider_d": round(cider, 6), "nltk_bleu_4": round(bleu, 6),
                      "seconds": round(seconds[setting], 1)})
        if progress:
            print(f"  decoding search: {setting.describe()}: val CIDEr-D {cider:.4f}, nltk BLEU-4 {bleu:.4f}",
                  file=sys.stderr, flush=True)
    best = max(range(len(table)), key=lambda i: (table[i]["cider_d"], -grid[i].beam_size, -i))
    return {**grid[best].to_json(), "beam_size": grid[best].beam_size, "alpha": grid[best].alpha,
            "split": split.name, "images": len(split.examples),
            "metric": "CIDEr-D (pycocoevalcap scorer, caption tokenizer words; COCO scale, 1.0 = '100')",
            "table": table}


def record(run_dir, choice):
    runs.write_json(os.path.join(run_dir, FILE_NAME), choice)


def setting(choice):
    """The `Decoding` a record chose (what the model keeps as its default)."""
    fields = {f.name for f in dataclasses.fields(Decoding)}
    return Decoding.from_json({key: value for key, value in choice.items() if key in fields})

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
import time

from captioner.evaluation import scoring
from captioner.evaluation import metrics as metrics_lib
from captioner import runs

# (beam size, length penalty alpha); greedy decoding has no length penalty.
GRID = ((1, 0.0), (3, 0.0), (3, 0.6), (3, 1.0), (5, 0.6), (5, 1.0))
FILE_NAME = "decoding.json"


def choose(captioner, split, batch_size, max_images=500, grid=GRID, progress=True):
    """Decodes the first `max_images` images of `split` with each setting of `grid`; returns the record.

    The best validation CIDEr-D wins (pycocoevalcap's scorer on the caption
    tokenizer's words; references and document frequencies from these images);
    a tie goes to the cheaper setting (smaller beam, then earlier in `grid`).

    Returns:
        dict with `beam_size`, `alpha`, `split`, `images`, `metric`, and `table`: one row per
        setting with its CIDEr-D, nltk BLEU-4 and seconds.
    """
    split = dataclasses.replace(split, examples=split.examples[:max_images])
    references = [list(e.captions) for e in split.examples]
    table = []
    for beam_size, alpha in grid:
        started = time.time()
        outputs = scoring.caption_examples(captioner, split.examples, batch_size, beam_size, alpha,
                                              progress=False)
        captions = [o["caption"] or "<empty>" for o in outputs]
        cider, _ = metrics_lib.cider_d(references, captions)
        bleu = metrics_lib.nltk_corpus_bleu(references, captions)["nltk_bleu_4"]
        table.append({"beam_size": beam_size, "alpha": alpha, "cider_d": round(cider, 6),
                      "nltk_bleu_4": round(bleu, 6), "seconds": round(time.time() - started, 1)})
        if progress:
            print(f"  decoding search: beam {beam_size}, alpha {alpha:g}: val CIDEr-D {cider:.4f}, "
                  f"nltk BLEU-4 {bleu:.4f}", file=sys.stderr, flush=True)
    best = max(range(len(table)), key=lambda i: (table[i]["cider_d"], -table[i]["beam_size"], -i))
    return {"beam_size": table[best]["beam_size"], "alpha": table[best]["alpha"], "split": split.name,
            "images": len(split.examples),
            "metric": "CIDEr-D (pycocoevalcap scorer, caption tokenizer words; COCO scale, 1.0 = '100')",
            "table": table}


def record(run_dir, choice):
    runs.write_json(os.path.join(run_dir, FILE_NAME), choice)


def setting(choice):
    """The `Captioner(decoding=...)` part of a record."""
    return {"beam_size": choice["beam_size"], "alpha": choice["alpha"]}

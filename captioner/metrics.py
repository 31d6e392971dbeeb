"""Caption metrics. Every score is on the 0-1 scale, and its name says how it was computed."""

import re
import string
import warnings

from nltk.translate.bleu_score import corpus_bleu

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def words(text):
    """Lower case, punctuation removed, split on white space (as the tokenizer does)."""
    return _PUNCTUATION.sub("", text.lower()).split()


def nltk_corpus_bleu(references, hypotheses):
    """Corpus BLEU-1..4 by `nltk.translate.bleu_score.corpus_bleu`, no smoothing.

    N-gram counts are pooled over the whole corpus, each hypothesis clipped
    against all of its references; the brevity penalty uses the closest
    reference length. This is not the COCO caption evaluation's BLEU (which
    tokenises with the PTB tokenizer), and is labelled as nltk's.

    Args:
        references: list of lists of str, the reference captions of each image.
        hypotheses: list of str, one generated caption per image.

    Returns:
        dict `nltk_bleu_1` .. `nltk_bleu_4`, each in 0..1.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets but {len(hypotheses)} hypotheses")
    if not hypotheses:
        raise ValueError("BLEU needs at least one hypothesis")
    refs = [[words(r) for r in group] for group in references]
    hyps = [words(h) for h in hypotheses]
    scores = {}
    with warnings.catch_warnings():
        # nltk warns when a higher-order precision is 0; the score is then 0, as defined.
        warnings.simplefilter("ignore", UserWarning)
        for n in range(1, 5):
            scores[f"nltk_bleu_{n}"] = float(corpus_bleu(refs, hyps, weights=(1.0 / n,) * n))
    return scores

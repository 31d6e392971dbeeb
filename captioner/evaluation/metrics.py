"""Caption metrics. Every score is on the 0-1 scale, and its name says how it was computed."""

import collections
import functools
import warnings

import numpy as np
import tensorflow as tf

from nltk.translate.bleu_score import corpus_bleu


@functools.cache
def _split_words():
    """The tokenizer's `split_words` as one compiled graph, for any number of captions."""
    from captioner.data import tokenizer

    return tf.function(tokenizer.split_words, input_signature=[tf.TensorSpec([None], tf.string)])


def words_of(texts):
    """The words of each text, as the caption tokenizer splits them (one TensorFlow call for all).

    See `captioner.data.tokenizer.standardize`: lower case, PTB-style tokens
    ("a man 's t-shirt"), punctuation-only tokens dropped.

    Args:
        texts: list of str.

    Returns:
        list of lists of str.
    """
    texts = list(texts)
    if not texts:
        return []
    return [[w.decode("utf-8") for w in ws] for ws in _split_words()(tf.constant(texts, tf.string)).to_list()]


@functools.lru_cache(maxsize=1 << 16)
def _words(text):
    return tuple(words_of([text])[0])


def words(text):
    """The words of one text, as the caption tokenizer splits them; for many texts, `words_of` is faster."""
    return list(_words(text))


def nltk_corpus_bleu(references, hypotheses):
    """Corpus BLEU-1..4 by `nltk.translate.bleu_score.corpus_bleu`, no smoothing.

    N-gram counts are pooled over the whole corpus, each hypothesis clipped
    against all of its references; the brevity penalty uses the closest
    reference length. Words are the caption tokenizer's (`words_of`), which
    follow the PTB tokenizer of the COCO caption evaluation closely but are not
    it, and the score is labelled as nltk's.

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
    tokenized = iter(words_of([r for group in references for r in group] + list(hypotheses)))
    refs = [[next(tokenized) for _ in group] for group in references]
    hyps = list(tokenized)
    scores = {}
    with warnings.catch_warnings():
        # nltk warns when a higher-order precision is 0; the score is then 0, as defined.
        warnings.simplefilter("ignore", UserWarning)
        for n in range(1, 5):
            scores[f"nltk_bleu_{n}"] = float(corpus_bleu(refs, hyps, weights=(1.0 / n,) * n))
    return scores


def _shapes_vocabulary():
    from captioner.data.synthetic import shapes

    return set(shapes.COLOURS), {**{s: s for s in shapes.SHAPES}, **{p: s for s, p in shapes.PLURALS.items()}}


def named_objects(caption):
    """(colour, shape) of every `COLOUR SHAPE` phrase of a Shapes caption, with the word positions.

    A plural (`two red circles`) names two objects. Returns a list of
    `((colour, shape), colour_index, shape_index)`.
    """
    colours, shape_words = _shapes_vocabulary()
    tokens = caption.split()
    found = []
    for index in range(len(tokens) - 1):
        if tokens[index] in colours and tokens[index + 1] in shape_words:
            pair = (tokens[index], shape_words[tokens[index + 1]])
            plural = shape_words[tokens[index + 1]] != tokens[index + 1]
            found.extend([(pair, index, index + 1)] * (2 if plural else 1))
    return found


def object_f1(captions, objects):
    """Micro-averaged F1 of the (colour, shape) objects that captions name, as multisets.

    Args:
        captions: list of str, one generated caption per image.
        objects: list of lists of (colour, shape), each image's ground truth.

    Returns:
        dict `object_precision`, `object_recall`, `object_f1` (0-1).
    """
    true_positives = predicted = actual = 0
    for caption, truth in zip(captions, objects):
        named = collections.Counter(pair for pair, _, _ in named_objects(caption))
        truth = collections.Counter(truth)
        true_positives += sum((named & truth).values())
        predicted += sum(named.values())
        actual += sum(truth.values())
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"object_precision": precision, "object_recall": recall, "object_f1": f1}


def region_box_overlap(boxes, grid_shape, image_width, image_height):
    """Share of each region cell's area inside the union of `boxes` ([x, y, w, h] in image pixels).

    Regions tile the image in a `grid_shape` (rows, columns) grid, row-major, as
    the encoder's feature grid does. Returns a `[rows * columns]` array.
    """
    rows, columns = grid_shape
    scale = 8  # sub-cells per region and axis: area shares at 1/64 of a region
    height, width = rows * scale, columns * scale
    ys = (np.arange(height) + 0.5) * image_height / height
    xs = (np.arange(width) + 0.5) * image_width / width
    inside = np.zeros((height, width), bool)
    for x, y, w, h in boxes:
        inside |= ((ys[:, None] >= y) & (ys[:, None] < y + h)) & ((xs[None, :] >= x) & (xs[None, :] < x + w))
    return inside.reshape(rows, scale, columns, scale).mean(axis=(1, 3)).reshape(-1)


def attention_pointing(captions, attentions, instances, grid_shape, image_sizes):
    """Mean share of attention inside the named object's box, over colour and shape words.

    For each `COLOUR SHAPE` phrase whose object is in the image, the attention
    of the steps that emitted the colour and the shape word is compared with
    the boxes of the image's objects of that colour and shape; each region's
    weight counts in proportion to its cell's area inside them. Phrases naming
    an object that is not in the image are not counted.

    Args:
        captions: list of str, generated captions (word i was emitted at step i).
        attentions: list of `[L, P]` arrays, the attention of each step.
        instances: list of lists of dicts with "colour", "shape", "bbox" per image.
        grid_shape: (rows, columns) of the region grid, P = rows * columns.
        image_sizes: list of (width, height) of the original images.

    Returns:
        dict `attention_pointing` (0-1) and `pointing_words` (how many words were counted).
    """
    shares = []
    for caption, attention, objects, (width, height) in zip(captions, attentions, instances, image_sizes):
        seen = set()
        for pair, colour_index, shape_index in named_objects(caption):
            boxes = [o["bbox"] for o in objects if (o["colour"], o["shape"]) == pair]
            if not boxes or colour_index in seen:
                continue
            seen.add(colour_index)
            overlap = region_box_overlap(boxes, grid_shape, width, height)
            for step in (colour_index, shape_index):
                shares.append(float(np.dot(attention[step], overlap)))
    return {"attention_pointing": float(np.mean(shares)) if shares else 0.0, "pointing_words": len(shares)}


def cider_d(references, hypotheses):
    """CIDEr-D by pycocoevalcap's scorer on the caption tokenizer's words (no Java needed).

    Document frequencies come from these references, as in the COCO caption
    evaluation; only the tokenisation differs from it (`words_of`, close to PTB).

    Args:
        references: list of lists of str, the reference captions of each image.
        hypotheses: list of str, one caption per image.

    Returns:
        `(corpus, per_image)`: the mean (COCO scale: 1.0 is "100" in papers) and a list of floats.
    """
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    if len(references) != len(hypotheses) or not hypotheses:
        raise ValueError(f"CIDEr-D needs one hypothesis per reference set, got {len(hypotheses)} and "
                         f"{len(references)}")
    tokenized = iter(words_of([r for group in references for r in group] + list(hypotheses)))
    refs = [[" ".join(next(tokenized)) for _ in group] for group in references]
    scorer = CiderScorer(n=4, sigma=6.0)
    for group, words in zip(refs, tokenized):
        scorer += (" ".join(words), group)
    corpus, per_image = scorer.compute_score()
    return float(corpus), [float(v) for v in per_image]


def genericness(captions, training_captions=None):
    """How generic a set of captions is: the figures reported beside caption metrics.

    Args:
        captions: list of str, one generated caption per image.
        training_captions: iterable of str, the training references, or None.

    Returns:
        dict with `distinct_captions` (distinct captions / images, 0-1), `vocabulary_used`
        (distinct words), `copied_from_train` (share of captions equal, word for word after
        the caption tokenizer's standardisation, to a training caption; None without
        `training_captions`) and `repeated_bigram` (share of captions with a word bigram twice).
    """
    if not captions:
        raise ValueError("genericness needs at least one caption")
    words = [tuple(w) for w in words_of(captions)]
    repeated = 0
    for caption in words:
        bigrams = list(zip(caption, caption[1:]))
        repeated += len(set(bigrams)) < len(bigrams)
    copied = None
    if training_captions is not None:
        known = {tuple(w) for w in words_of(list(training_captions))}
        copied = sum(caption in known for caption in words) / len(words)
    return {"distinct_captions": len(set(words)) / len(words),
            "vocabulary_used": len({w for caption in words for w in caption}),
            "copied_from_train": copied,
            "repeated_bigram": repeated / len(words)}

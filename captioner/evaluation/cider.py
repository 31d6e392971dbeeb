"""CIDEr-D as the COCO caption evaluation computes it, over token ids, batched and in graph.

The self-critical reward (`captioner.training.scst`). `CiderD` reproduces
pycocoevalcap's `CiderScorer` (the COCO evaluation's "CIDEr", which is CIDEr-D):
n-grams of 1 to 4 words, tf-idf vectors with `idf = log(D) - log(max(1, df))`,
the hypothesis' weights clipped at the reference's (`min(h, r) * r`), cosine
per n, a Gaussian penalty `exp(-delta**2 / (2 * 6**2))` on the difference in
length (pycocoevalcap's length: the number of bigrams), averaged over n and
over the references, times 10.

Two choices follow self-critical.pytorch, where SCST comes from:

- document frequencies `df` and `D` come from the *training* references,
  counted once (`DocumentFrequencies.from_references`) and stored with the run
  (`cider_df.npz`), not from the batch;
- the end token is a word of every caption, references and hypotheses alike.
  Without it a caption cut off mid-phrase ("a red circle and a") scores as
  well as a finished one, and SCST learns to stop mid-phrase.

Words are token ids of the run's vocabulary (unknown words are `<unk>`); an
n-gram is the integer `((w1 * V + w2) * V + w3) * V + w4`, unique over all n
because ids of words are at least 1. Scores are computed in float64, equal to
pycocoevalcap's to rounding (tested to 1e-6).
"""

import collections
import math
import os

import numpy as np
import tensorflow as tf

from captioner import files

MAX_N = 4
SIGMA = 6.0
FILE_NAME = "cider_df.npz"
# The n-gram key ((w1 V + w2) V + w3) V + w4 must fit in an int64.
MAX_VOCABULARY = int((2 ** 63 - 1) ** (1 / MAX_N))


def ngrams(words, n=MAX_N):
    """All n-grams of 1..n words of a sequence (tuples), with repetition."""
    return [tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)]


def ngram_key(ngram, vocabulary_size):
    key = 0
    for word in ngram:
        key = key * vocabulary_size + int(word)
    return key


class DocumentFrequencies:
    """In how many images' reference sets each n-gram occurs, and how many images there are.

    Args:
        keys: int64 array, n-gram keys (see the module docstring).
        counts: int64 array, the document frequency of each key.
        documents: int, D, the number of images (reference sets) counted.
        vocabulary_size: int, V of the keys.
    """

    def __init__(self, keys, counts, documents, vocabulary_size):
        self.keys = np.asarray(keys, np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.documents = int(documents)
        self.vocabulary_size = int(vocabulary_size)
        if documents < 1:
            raise ValueError("document frequencies need at least one reference set")

    @classmethod
    def from_references(cls, references, vocabulary_size):
        """Counts over `references`: per image, a list of token-id sequences (end token included)."""
        if vocabulary_size > MAX_VOCABULARY:
            raise ValueError(f"CIDEr-D n-gram keys need a vocabulary of at most {MAX_VOCABULARY} ids, "
                             f"got {vocabulary_size}")
        counts = collections.Counter()
        for refs in references:
            counts.update({ngram_key(g, vocabulary_size) for ref in refs for g in ngrams(list(ref))})
        keys = np.fromiter(counts.keys(), np.int64, len(counts))
        values = np.fromiter(counts.values(), np.int64, len(counts))
        return cls(keys, values, len(references), vocabulary_size)

    def as_dict(self, words=None):
        """`{ngram tuple: df}`, the form pycocoevalcap keeps; `words` maps ids to strings (else ids)."""
        result = {}
        for key, count in zip(self.keys.tolist(), self.counts.tolist()):
            ids = []
            while key:
                key, word = divmod(key, self.vocabulary_size)
                ids.append(word)
            ngram = tuple(reversed(ids))
            result[tuple(words[i] for i in ngram) if words is not None else ngram] = float(count)
        return result

    def save(self, path):
        with files.replacing(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, keys=self.keys, counts=self.counts, documents=self.documents,
                     vocabulary_size=self.vocabulary_size)

    @classmethod
    def load(cls, path):
        with np.load(path) as data:
            return cls(data["keys"], data["counts"], int(data["documents"]), int(data["vocabulary_size"]))


def reference_ids(tokenizer, examples, max_length, end_id):
    """Each example's references as token-id lists, cut at `max_length` words, end token appended.

    The same ids the training pipeline gives (`tokenize_captions` targets), so
    the stored frequencies match the rewards' references.
    """
    captions = [c for e in examples for c in e.captions]
    ids = []
    for start in range(0, len(captions), 4096):
        chunk = tokenizer.tokenize(tf.constant(captions[start:start + 4096])).to_list()
        ids.extend(list(c[:max_length]) + [end_id] for c in chunk)
    result, position = [], 0
    for e in examples:
        result.append(ids[position:position + len(e.captions)])
        position += len(e.captions)
    return result


def ensure_frequencies(run_dir, tokenizer, examples, max_length, end_id):
    """The run's stored training-reference frequencies, counted and written on first use."""
    path = os.path.join(run_dir, FILE_NAME)
    if os.path.exists(path):
        return DocumentFrequencies.load(path)
    frequencies = DocumentFrequencies.from_references(
        reference_ids(tokenizer, examples, max_length, end_id), tokenizer.vocabulary_size)
    frequencies.save(path)
    return frequencies


def _keys(tokens, n, vocabulary_size):
    """`tokens [..., L]` (0 = padding) -> n-gram keys and validity `[..., L]` (positions past the end invalid)."""
    tokens = tf.cast(tokens, tf.int64)
    length = tf.shape(tokens)[-1]
    padded = tf.pad(tokens, tf.concat([tf.zeros([tf.rank(tokens) - 1, 2], tf.int32), [[0, MAX_N]]], 0))
    key = tf.zeros_like(tokens)
    valid = tf.ones_like(tokens, tf.bool)
    for offset in range(n):
        word = padded[..., offset:offset + length]
        key = key * vocabulary_size + word
        valid &= word > 0
    return key, valid


class CiderD:
    """Per-caption CIDEr-D of sampled captions against their image's references, in graph.

    Args:
        frequencies: `DocumentFrequencies` of the training references.
        sigma: float, the length penalty's width (6 in the COCO evaluation).
    """

    def __init__(self, frequencies, sigma=SIGMA):
        self.frequencies = frequencies
        self.vocabulary_size = frequencies.vocabulary_size
        self.sigma = sigma
        self.log_documents = math.log(float(frequencies.documents))
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(frequencies.keys, tf.int64),
                                                tf.constant(frequencies.counts.astype(np.float64))),
            default_value=tf.constant(0.0, tf.float64))

    def _vectors(self, tokens, n):
        """tf-idf of each n-gram position: `(keys, valid, first, weights [..., L])` and the norm `[...]`.

        `first` marks an n-gram's first position in its caption; its weight is
        `count * idf`, the same at all of its positions.
        """
        key, valid = _keys(tokens, n, self.vocabulary_size)
        same = tf.equal(key[..., :, None], key[..., None, :]) & valid[..., :, None] & valid[..., None, :]
        count = tf.reduce_sum(tf.cast(same, tf.float64), -1)
        length = tf.shape(key)[-1]
        earlier = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0) & ~tf.eye(length, dtype=tf.bool)
        first = valid & ~tf.reduce_any(same & earlier, -1)
        document_frequency = self.table.lookup(key)
        idf = self.log_documents - tf.math.log(tf.maximum(document_frequency, 1.0))
        weights = tf.where(valid, count * idf, 0.0)
        norm = tf.sqrt(tf.reduce_sum(tf.where(first, weights * weights, 0.0), -1))
        return key, valid, first, weights, norm

    def __call__(self, candidates, references):
        """CIDEr-D of each candidate.

        Args:
            candidates: int `[N, L]` token ids, end token included where the caption ended, 0 after.
            references: int `[N, R, T]`, the references of each candidate's image (end token
                included, 0 after); all-zero rows are padding (images with fewer references).

        Returns:
            float64 `[N]`, on the COCO scale (pycocoevalcap's: 10 x the mean cosine).
        """
        candidates = tf.convert_to_tensor(candidates)
        references = tf.convert_to_tensor(references)
        real = tf.reduce_any(references > 0, -1)  # [N, R]
        words = lambda t: tf.reduce_sum(tf.cast(t > 0, tf.float64), -1)  # noqa: E731
        # pycocoevalcap's length is the number of bigrams.
        delta = tf.maximum(words(candidates) - 1.0, 0.0)[:, None] - tf.maximum(words(references) - 1.0, 0.0)
        penalty = tf.exp(-(delta * delta) / (2.0 * self.sigma ** 2))
        total = tf.zeros(tf.shape(real), tf.float64)
        for n in range(1, MAX_N + 1):
            hyp_key, _, hyp_first, hyp_weights, hyp_norm = self._vectors(candidates, n)
            ref_key, ref_valid, _, ref_weights, ref_norm = self._vectors(references, n)
            # The reference's weight of each candidate n-gram (0 where the reference lacks it).
            match = tf.equal(hyp_key[:, None, :, None], ref_key[:, :, None, :]) & ref_valid[:, :, None, :]
            ref_at = tf.reduce_max(tf.where(match, ref_weights[:, :, None, :], 0.0), -1)  # [N, R, L]
            clipped = tf.minimum(hyp_weights[:, None, :], ref_at) * ref_at
            value = tf.reduce_sum(tf.where(hyp_first[:, None, :], clipped, 0.0), -1)  # [N, R]
            norms = hyp_norm[:, None] * ref_norm
            value = tf.where(norms > 0, value / tf.where(norms > 0, norms, 1.0), value)
            total += value * penalty
        per_reference = tf.where(real, total / MAX_N, 0.0)
        count = tf.reduce_sum(tf.cast(real, tf.float64), -1)
        return 10.0 * tf.math.divide_no_nan(tf.reduce_sum(per_reference, -1), count)

"""Word-level caption tokenizer whose tokenise and detokenise are TensorFlow graph ops.

The same layer runs eagerly, inside `tf.data`, inside the model and inside an
exported SavedModel. Special ids are fixed: 0 pad, 1 unknown, 2 start, 3 end.
"""

import collections

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from captioner import files

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIAL_TOKENS = (PAD, UNK, START, END)
PAD_ID, UNK_ID, START_ID, END_ID = range(4)


def standardize(strings):
    """Lower case, punctuation removed (as in Karpathy's COCO preprocessing)."""
    strings = tf.strings.lower(strings, encoding="utf-8")
    return tf.strings.regex_replace(strings, r"[[:punct:]]", "")


_SPLITTER = tf_text.WhitespaceTokenizer()


def split_words(strings):
    """Standardised words of `strings [...]` as a ragged `[..., None]` string tensor."""
    return _SPLITTER.tokenize(standardize(strings))


def build_vocabulary(captions, min_count=1, batch_size=65536):
    """Words of `captions` seen at least `min_count` times, most frequent first.

    Args:
        captions: list of str, the training captions.
        min_count: int, minimum number of occurrences.
    """
    counts = collections.Counter()
    for start in range(0, len(captions), batch_size):
        words = split_words(tf.constant(captions[start:start + batch_size]))
        counts.update(w.decode("utf-8") for w in words.flat_values.numpy())
    kept = [w for w, n in counts.items() if n >= min_count and w not in SPECIAL_TOKENS]
    return sorted(kept, key=lambda w: (-counts[w], w))


@keras.saving.register_keras_serializable(package="captioner")
class CaptionTokenizer(keras.layers.Layer):
    """Maps captions to token ids and back, in graph.

    Args:
        vocabulary: list of str, the words; the special tokens are put first.
    """

    def __init__(self, vocabulary, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        words = [w for w in vocabulary if w not in SPECIAL_TOKENS]
        self.words = list(SPECIAL_TOKENS) + words
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.words), tf.range(len(self.words), dtype=tf.int32)),
            default_value=UNK_ID)
        self._word_tensor = tf.constant(self.words)
        self.built = True

    @property
    def vocabulary_size(self):
        return len(self.words)

    def tokenize(self, strings):
        """`strings [...]` -> ragged ids `[..., None]`, no start or end token."""
        words = split_words(tf.convert_to_tensor(strings, tf.string))
        return tf.ragged.map_flat_values(self._table.lookup, words)

    def call(self, strings):
        return self.tokenize(strings)

    def detokenize(self, ids):
        """`ids [N, T]` -> `[N]` strings, cut at the first end token, padding and start dropped.

        An unknown word stays, written `<unk>`, so that word i of a generated
        caption is the word of decoding step i (attention figures and pointing
        pair them).
        """
        ids = tf.convert_to_tensor(ids, tf.int32)
        ended = tf.cumsum(tf.cast(tf.equal(ids, END_ID), tf.int32), axis=-1) > 0
        keep = tf.logical_and(tf.logical_not(ended), tf.logical_or(ids > END_ID, tf.equal(ids, UNK_ID)))
        ids = tf.ragged.boolean_mask(ids, keep)
        words = tf.ragged.map_flat_values(tf.gather, self._word_tensor, ids)
        return tf.strings.reduce_join(words, axis=-1, separator=" ")

    def id_to_word(self, ids):
        return tf.gather(self._word_tensor, ids)

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary=self.words[len(SPECIAL_TOKENS):])
        config.pop("trainable", None)
        return config


def save_vocabulary(tokenizer, path):
    """Writes one token a line, atomically (see `captioner.files.replacing`)."""
    with files.replacing(path) as temporary, open(temporary, "w") as handle:
        handle.write("\n".join(tokenizer.words) + "\n")


def load_vocabulary(path):
    with open(path) as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]

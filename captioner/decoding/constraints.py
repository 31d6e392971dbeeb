"""What reshapes a decoding step's distribution before a word is chosen: one place for every rule.

Greedy search, beam search (plain and diverse) and sampling all call
`Constraints.log_probs(logits, tokens, step)`, in the manner of Hugging Face's
logits processors, so each rule means the same under every strategy:

- banned words are never emitted: padding and the start token always, and the
  words of `--ban-words`;
- `min_length`: the end token is banned before that many words;
- `no_repeat_ngram_size` n: a word that would complete an n-gram already in
  the caption is banned;
- `repetition_penalty` R >= 1 (CTRL, Keskar et al. 2019): the logit of a word
  already in the caption is divided by R if positive, multiplied by R if not;
- `max_words`: after that many words only the end token may come, so a caption
  never runs past `--max-length`.

The step's log-probabilities are then the log-softmax of the processed logits
over the words still allowed, so they sum to one: the scores of captions under
constraints are log-probabilities of that distribution. A rule that is off
adds no op to the graph.
"""

import tensorflow as tf

NEG_INF = -1e9


class Constraints:
    """The constraints of one decoding, applied to each step's logits.

    Args:
        end_id: int, the end token.
        banned_ids: ints, ids never emitted (padding, the start token, banned words).
        min_length: int, words before the end token may come (0: no limit).
        no_repeat_ngram_size: int, n (0: off).
        repetition_penalty: float >= 1 (1: off).
        max_words: int or None, the most words a caption has: at that step only the end token is allowed.
    """

    def __init__(self, end_id, banned_ids=(), min_length=0, no_repeat_ngram_size=0, repetition_penalty=1.0,
                 max_words=None):
        self.max_words = None if max_words is None else int(max_words)
        self.end_id = int(end_id)
        self.banned_ids = tuple(sorted({int(i) for i in banned_ids}))
        self.min_length = int(min_length)
        self.no_repeat_ngram_size = int(no_repeat_ngram_size)
        self.repetition_penalty = float(repetition_penalty)

    @property
    def needs_tokens(self):
        """Whether the rules read the caption so far (the samplers then pass it)."""
        return self.no_repeat_ngram_size > 0 or self.repetition_penalty != 1.0

    def log_probs(self, logits, tokens=None, step=0):
        """Float32 log-probabilities `[N, V]` of the next word under the constraints.

        Args:
            logits: `[N, V]`, the model's next-word logits.
            tokens: int `[N, L]`, each row's words so far at positions `< step` (0 elsewhere); needed
                when `needs_tokens`.
            step: int scalar (tensor), the position of the word being chosen (words so far).
        """
        logits = tf.cast(logits, tf.float32)
        vocabulary = tf.shape(logits)[-1]
        if self.repetition_penalty != 1.0:
            used = self._present(tokens, step, vocabulary) > 0
            penalised = tf.where(logits > 0, logits / self.repetition_penalty, logits * self.repetition_penalty)
            logits = tf.where(used, penalised, logits)
        banned = tf.zeros_like(logits, tf.bool)
        if self.banned_ids:
            banned |= tf.reduce_any(tf.equal(tf.range(vocabulary)[:, None], tf.constant(self.banned_ids))[None], -1)
        if self.min_length > 0:
            too_short = tf.cast(step, tf.int32) < self.min_length
            banned |= too_short & tf.equal(tf.range(vocabulary), self.end_id)[None]
        if self.no_repeat_ngram_size > 0:
            banned |= self._repeated_ngram_ends(tokens, step, vocabulary) > 0
        if self.max_words is not None:  # a caption has at most this many words: then only the end token
            banned |= (tf.cast(step, tf.int32) >= self.max_words) & tf.not_equal(tf.range(vocabulary), self.end_id)[None]
        return tf.nn.log_softmax(tf.where(banned, tf.constant(NEG_INF, tf.float32), logits))

    @staticmethod
    def _scatter(rows, words, keep, shape):
        """`[N, V]` counts of `(row, word)` pairs where `keep`, from `[N, M]` tensors."""
        indices = tf.stack([tf.reshape(rows, [-1]), tf.reshape(words, [-1])], -1)
        return tf.scatter_nd(indices, tf.reshape(tf.cast(keep, tf.int32), [-1]), shape)

    def _present(self, tokens, step, vocabulary):
        """How often each word appears among a row's words so far: `[N, V]` int."""
        count, length = tf.shape(tokens)[0], tf.shape(tokens)[1]
        rows = tf.tile(tf.range(count)[:, None], [1, length])
        keep = (tf.range(length)[None] < step) & (tokens > 0)
        return self._scatter(rows, tokens, keep, tf.stack([count, vocabulary]))

    def _repeated_ngram_ends(self, tokens, step, vocabulary):
        """Words that would complete an n-gram the row already holds: `[N, V]` int (> 0 where banned).

        The n-gram being completed is the last n - 1 words and the next; an earlier
        position j whose n - 1 words equal them bans the word at j + n - 1.
        """
        n = self.no_repeat_ngram_size
        count, length = tf.shape(tokens)[0], tf.shape(tokens)[1]
        step = tf.cast(step, tf.int32)
        starts = tf.range(length)  # j: the n-gram tokens[j : j + n]
        matches = tf.ones([count, length], tf.bool)
        padded = tf.pad(tokens, [[0, 0], [0, n]])
        for offset in range(n - 1):
            earlier = padded[:, offset:offset + length]  # tokens[j + offset]
            current = tf.gather(padded, tf.maximum(step - (n - 1) + offset, 0), axis=1)  # the prefix's word
            matches &= tf.equal(earlier, current[:, None])
        matches &= (starts + n - 1 < step)[None] & (step >= n - 1)
        ends = padded[:, n - 1:n - 1 + length]  # tokens[j + n - 1]
        rows = tf.tile(tf.range(count)[:, None], [1, length])
        return self._scatter(rows, ends, matches & (ends > 0), tf.stack([count, vocabulary]))

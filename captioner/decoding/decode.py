"""A decoder and its tokenizer driven by a `Decoding`: the one place a setting becomes a sampler call.

`Captioner.decode_features` (and through it `generate`, the exported
SavedModel, evaluation and captioning) calls `decode`, which picks the
strategy (greedy, beam, diverse beam, sampling), builds the step constraints,
runs it in graph and turns token ids into captions.
"""

import tensorflow as tf

from captioner.data import tokenizer as tokenizer_lib
from captioner.decoding.base import length_penalty
from captioner.decoding.beam import beam_search
from captioner.decoding.constraints import Constraints
from captioner.decoding.greedy import greedy_search
from captioner.decoding.sampling import sample

SPECIAL = (tokenizer_lib.PAD_ID, tokenizer_lib.START_ID)


def banned_ids(tokenizer, words):
    """Token ids of `words` (never generated); ValueError naming the words the vocabulary lacks."""
    known = {word: index for index, word in enumerate(tokenizer.words)}
    unknown = [w for w in words if w not in known or w in tokenizer_lib.SPECIAL_TOKENS]
    if unknown:
        raise ValueError(f"--ban-words: {', '.join(repr(w) for w in unknown)} not in the model's vocabulary "
                         f"({tokenizer.vocabulary_size - len(tokenizer_lib.SPECIAL_TOKENS)} words)")
    return tuple(known[w] for w in words)


def constraints_of(tokenizer, decoding, max_words=None):
    """The `Constraints` of a `Decoding` for a model's tokenizer (captions of at most `max_words` words)."""
    return Constraints(tokenizer_lib.END_ID, SPECIAL + banned_ids(tokenizer, decoding.ban_words),
                       decoding.min_length, decoding.no_repeat_ngram_size, decoding.repetition_penalty, max_words)


def _repeat_rows(tensor, count):
    tiled = tf.tile(tensor[:, None], tf.concat([[1, count], tf.ones([tf.rank(tensor) - 1], tf.int32)], 0))
    return tf.reshape(tiled, tf.concat([[-1], tf.shape(tensor)[1:]], 0))


def decode(decoder, tokenizer, features, decoding, length, alpha=None):
    """Captions of region features `[B, P, D]` under `decoding`, in graph.

    Args:
        decoder: a `CaptionDecoder`.
        tokenizer: its `CaptionTokenizer`.
        features: `[B, P, D]`.
        decoding: `captioner.decoding.settings.Decoding`.
        length: int, the most steps (words and the end token).
        alpha: float or scalar tensor, overrides `decoding.alpha` (one compiled graph for every alpha).

    Returns:
        dict of the best caption per image, `tokens [B, L]`, `captions [B]`, `scores [B]` (length-normalised
        under beam search), `log_probs [B]`, `lengths [B]`, `attention [B, L, P]`; and the n-best in rank order,
        `nbest_tokens [B, N, L]`, `nbest_captions [B, N]`, `nbest_scores [B, N]`, `nbest_log_probs [B, N]`
        (N = `decoding.num_captions`). Beam search also returns its whole beam (`beam_captions [B, K]`, ...).
    """
    alpha = decoding.alpha if alpha is None else alpha
    constraints = constraints_of(tokenizer, decoding, max_words=length - 1)
    memory = decoder.prepare(features)
    batch = tf.shape(features)[0]
    ids = dict(start_id=tokenizer_lib.START_ID, end_id=tokenizer_lib.END_ID, constraints=constraints)
    count = decoding.num_captions
    if decoding.sample:
        tiled = tf.nest.map_structure(lambda m: _repeat_rows(m, count), memory)
        drawn = sample(decoder.next_token, tiled, decoder.initial_state(tiled), batch * count, length,
                       temperature=decoding.temperature, seed=decoding.seed, top_k=decoding.top_k,
                       top_p=decoding.top_p, **ids)
        log_probs = tf.reshape(drawn["log_probs"], [batch, count])
        lengths = tf.reshape(drawn["lengths"], [batch, count])
        scores = log_probs / length_penalty(lengths + 1, alpha)
        scores, order = tf.math.top_k(scores, k=count)  # the samples ranked; the best first
        per_image = lambda key: tf.reshape(drawn[key], tf.concat([[batch, count], tf.shape(drawn[key])[1:]], 0))  # noqa: E731
        nbest = {"tokens": tf.gather(per_image("tokens"), order, batch_dims=1), "scores": scores,
                 "log_probs": tf.gather(log_probs, order, batch_dims=1)}
        result = {key: value[:, 0] for key, value in nbest.items()}
        result["lengths"] = tf.gather(lengths, order, batch_dims=1)[:, 0]
        result["attention"] = tf.gather(per_image("attention"), order, batch_dims=1)[:, 0]
    elif decoding.beam_size == 1:
        result = greedy_search(decoder.next_token, memory, decoder.initial_state(memory), batch, length, **ids)
        nbest = {key: result[key][:, None] for key in ("tokens", "scores", "log_probs")}
    else:
        beams = beam_search(decoder.next_token, memory, decoder.initial_state(memory), batch, decoding.beam_size,
                            length, alpha=alpha, groups=decoding.beam_groups,
                            diversity=decoding.diversity_strength, **ids)
        result = {key: beams[key][:, 0] for key in ("tokens", "scores", "log_probs", "lengths", "attention")}
        nbest = {key: beams[key][:, :count] for key in ("tokens", "scores", "log_probs")}
        result["beam_tokens"], result["beam_scores"] = beams["tokens"], beams["scores"]
        result["beam_captions"] = _detokenize(tokenizer, beams["tokens"])
    result["captions"] = tokenizer.detokenize(result["tokens"])
    result.update({f"nbest_{key}": value for key, value in nbest.items()})
    result["nbest_captions"] = _detokenize(tokenizer, nbest["tokens"])
    return result


def _detokenize(tokenizer, tokens):
    """`[B, N, L]` ids -> `[B, N]` captions."""
    shape = tf.shape(tokens)
    return tf.reshape(tokenizer.detokenize(tf.reshape(tokens, [-1, shape[2]])), shape[:2])

"""Batched beam search over images and beams in one graph, with a GNMT length penalty."""

import tensorflow as tf

from captioner.decoding.base import check_alpha, length_penalty, log_probabilities, same_shapes


def _tile(tensor, beam_size):
    return tf.repeat(tensor, beam_size, axis=0)


def beam_search(next_fn, memory, state, batch_size, beam_size, max_length, start_id, end_id, alpha=0.0,
                banned_ids=()):
    """Batched beam search over images and beams in one graph.

    Each step expands every alive beam by every word, keeps the `2 * beam_size`
    best candidates, moves those that produced the end token to a finished set
    (scored `log_prob / length_penalty`) and the best `beam_size` others on as
    alive beams. It stops when, for every image, `beam_size` sequences have
    ended and no alive beam can still beat the worst of them, or at `max_length`.

    Args:
        next_fn: the next-token callback (see module docstring).
        memory: dict of `[B, ...]` tensors, tiled over beams here once.
        state: dict of `[B, ...]` tensors, the initial state.
        batch_size: int or scalar tensor, B.
        beam_size: int, K (static).
        max_length: int, most words per caption, the end token included (static).
        start_id: int, id fed at the first step.
        end_id: int, id that ends a sequence.
        alpha: float >= 0, length penalty exponent (0: none; larger favours longer captions). A
            negative alpha is refused: it would let a longer caption's score grow, which the
            early stop (no alive beam can beat the finished ones) rules out.
        banned_ids: ints, ids never emitted (padding, the start token).

    Returns:
        dict with, best first, `tokens [B, K, L]` (end token included, 0 after),
        `scores [B, K]` (length-normalised log-probabilities), `log_probs [B, K]`,
        `lengths [B, K]` (words before the end token) and `attention [B, K, L, P]`.
    """
    check_alpha(alpha)
    B, K, L = batch_size, beam_size, max_length
    memory = tf.nest.map_structure(lambda t: _tile(t, K), memory)
    state = tf.nest.map_structure(lambda t: _tile(t, K), state)
    steps = tf.range(L)
    minus_inf = tf.constant(-1e9, tf.float32)

    def flat_gather(tensor, beam_index):
        """`tensor [B * K, ...]` reordered by `beam_index [B, K]` (beams of the same image)."""
        offsets = tf.range(B)[:, None] * K
        return tf.gather(tensor, tf.reshape(beam_index + offsets, [-1]))

    def expand(step, logits, weights, alive_tokens, alive_log_probs, alive_attention):
        """The 2K best one-word extensions of the alive beams of each image."""
        log_probs = log_probabilities(logits, banned_ids)
        vocabulary = tf.shape(log_probs)[-1]
        totals = alive_log_probs[..., None] + tf.reshape(log_probs, [B, K, vocabulary])
        top_log_probs, top_index = tf.math.top_k(tf.reshape(totals, [B, K * vocabulary]), k=2 * K)
        beam_index, words = top_index // vocabulary, top_index % vocabulary
        here = tf.equal(steps, step)
        tokens = tf.gather(alive_tokens, beam_index, batch_dims=1)
        tokens = tf.where(here[None, None, :], words[..., None], tokens)
        weights = tf.gather(tf.reshape(weights, [B, K, -1]), beam_index, batch_dims=1)
        attention = tf.gather(alive_attention, beam_index, batch_dims=1)
        attention = tf.where(here[None, None, :, None], weights[:, :, None, :], attention)
        return tokens, top_log_probs, beam_index, words, attention

    def advance(step, logits, weights, state, loop):
        (alive_tokens, alive_log_probs, alive_attention,
         finished_tokens, finished_scores, finished_log_probs, finished_attention) = loop
        tokens, log_probs, beam_index, words, attention = expand(
            step, logits, weights, alive_tokens, alive_log_probs, alive_attention)
        ended = tf.equal(words, end_id)
        # Alive: the best K candidates that did not end.
        alive_scores = tf.where(ended, minus_inf, log_probs)
        keep_scores, keep = tf.math.top_k(alive_scores, k=K)
        alive_tokens = tf.gather(tokens, keep, batch_dims=1)
        alive_attention = tf.gather(attention, keep, batch_dims=1)
        alive_log_probs = keep_scores
        state = tf.nest.map_structure(
            lambda t: flat_gather(t, tf.gather(beam_index, keep, batch_dims=1)), state)
        # Finished: the best K of those finished before and those that ended now.
        new_scores = tf.where(ended, log_probs / length_penalty(step + 1, alpha), minus_inf)
        all_scores = tf.concat([finished_scores, new_scores], axis=1)
        best_scores, best = tf.math.top_k(all_scores, k=K)
        finished_tokens = tf.gather(tf.concat([finished_tokens, tokens], 1), best, batch_dims=1)
        finished_log_probs = tf.gather(tf.concat([finished_log_probs, log_probs], 1), best, batch_dims=1)
        finished_attention = tf.gather(tf.concat([finished_attention, attention], 1), best, batch_dims=1)
        loop = (alive_tokens, alive_log_probs, alive_attention,
                finished_tokens, best_scores, finished_log_probs, finished_attention)
        return state, loop

    # Step 0 runs outside the loop: its attention gives the buffers' shape.
    logits, state, weights = next_fn(tf.fill([B * K], start_id), state, memory)
    attention_shape = tf.concat([[B, K, L], tf.shape(weights)[1:]], 0)
    zeros_tokens = tf.zeros([B, K, L], tf.int32)
    zeros_attention = tf.zeros(attention_shape, weights.dtype)
    # Only the first beam is real at the start; the others are copies that must not be picked.
    alive_log_probs = tf.tile(tf.concat([[0.0], tf.fill([K - 1], minus_inf)], 0)[None], [B, 1])
    loop = (zeros_tokens, alive_log_probs, zeros_attention,
            zeros_tokens, tf.fill([B, K], minus_inf), tf.fill([B, K], minus_inf), zeros_attention)
    state, loop = advance(0, logits, weights, state, loop)

    def cond(step, tokens, state, loop):
        alive_log_probs, finished_scores = loop[1], loop[4]
        # The best an alive beam can still reach: its log-prob cannot grow, its penalty can.
        best_alive = alive_log_probs[:, 0] / length_penalty(L, alpha)
        worst_finished = finished_scores[:, -1]
        done = tf.reduce_all(worst_finished >= best_alive)
        return (step < L) & ~done

    def body(step, tokens, state, loop):
        logits, new_state, weights = next_fn(tokens, state, memory)
        new_state, new_loop = advance(step, logits, weights, new_state, loop)
        new_state, new_loop = same_shapes(new_state, state), same_shapes(new_loop, loop)
        return step + 1, tf.reshape(new_loop[0][:, :, step], [-1]), new_state, new_loop

    tokens = tf.reshape(loop[0][:, :, 0], [-1])
    _, _, _, loop = tf.while_loop(cond, body, (tf.constant(1), tokens, state, loop), maximum_iterations=L - 1)
    (alive_tokens, alive_log_probs, alive_attention,
     finished_tokens, finished_scores, finished_log_probs, finished_attention) = loop

    # Images with fewer than K ended captions are topped up with alive beams, scored at full length.
    alive_scores = alive_log_probs / length_penalty(L, alpha)
    scores = tf.concat([finished_scores, tf.where(alive_log_probs > minus_inf / 2, alive_scores, 2 * minus_inf)], 1)
    scores, best = tf.math.top_k(scores, k=K)
    pick = lambda a, b: tf.gather(tf.concat([a, b], 1), best, batch_dims=1)  # noqa: E731
    tokens = pick(finished_tokens, alive_tokens)
    lengths = tf.reduce_sum(tf.cast((tokens != 0) & (tokens != end_id), tf.int32), axis=-1)
    return {"tokens": tokens, "scores": scores, "log_probs": pick(finished_log_probs, alive_log_probs),
            "lengths": lengths, "attention": pick(finished_attention, alive_attention)}

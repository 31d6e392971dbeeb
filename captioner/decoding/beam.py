"""Batched beam search over images and beams in one graph: GNMT length penalty, constraints, diverse groups."""

import tensorflow as tf

from captioner.decoding.base import check_alpha, length_penalty, same_shapes
from captioner.decoding.constraints import NEG_INF, Constraints


def _tile(tensor, beam_size):
    return tf.repeat(tensor, beam_size, axis=0)


def beam_search(next_fn, memory, state, batch_size, beam_size, max_length, start_id, end_id, alpha=0.0,
                banned_ids=(), constraints=None, groups=1, diversity=0.0):
    """Batched beam search over images and beams in one graph.

    Each step expands every alive beam by every word, keeps the `2 * beam_size`
    best candidates, moves those that produced the end token to a finished set
    (scored `log_prob / length_penalty`) and the best `beam_size` others on as
    alive beams. It stops when, for every image, `beam_size` sequences have
    ended and no alive beam can still beat the worst of them, or at `max_length`.

    With `groups` G > 1 it is diverse beam search (Vijayakumar et al. 2018,
    Hamming diversity): the beam is split into G groups of `beam_size / G`,
    searched one after the other at each step; a group chooses its candidates by
    log-probability minus `diversity` times the number of earlier groups' alive
    beams that chose the same word at this step, while every caption keeps its
    plain log-probability as its score. The n-best are taken across all groups.

    Args:
        next_fn: the next-token callback (see `captioner.decoding`).
        memory: dict of `[B, ...]` tensors, tiled over beams here once.
        state: dict of `[B, ...]` tensors, the initial state.
        batch_size: int or scalar tensor, B.
        beam_size: int, K (static), a multiple of `groups`.
        max_length: int, most words per caption, the end token included (static).
        start_id: int, id fed at the first step.
        end_id: int, id that ends a sequence.
        alpha: float >= 0, length penalty exponent (0: none; larger favours longer captions). A
            negative alpha is refused: it would let a longer caption's score grow, which the
            early stop (no alive beam can beat the finished ones) rules out.
        banned_ids: ints, ids never emitted (padding, the start token), when `constraints` is not given.
        constraints: `captioner.decoding.constraints.Constraints`, or None (`banned_ids` only).
        groups: int, G (static); 1 is plain beam search.
        diversity: float >= 0, the Hamming diversity strength (lambda).

    Returns:
        dict with, best first and distinct, `tokens [B, K, L]` (end token included, 0 after),
        `scores [B, K]` (length-normalised log-probabilities), `log_probs [B, K]`,
        `lengths [B, K]` (words before the end token) and `attention [B, K, L, P]`.
    """
    check_alpha(alpha)
    if beam_size % groups:
        raise ValueError(f"beam size {beam_size} must be a multiple of the number of groups {groups}")
    constraints = constraints or Constraints(end_id, banned_ids)
    B, K, L, G = batch_size, beam_size, max_length, groups
    k = K // G
    memory = tf.nest.map_structure(lambda t: _tile(t, K), memory)
    state = tf.nest.map_structure(lambda t: _tile(t, K), state)
    steps = tf.range(L)
    minus_inf = tf.constant(NEG_INF, tf.float32)

    def flat_gather(tensor, beam_index):
        """`tensor [B * K, ...]` reordered by `beam_index [B, K]` (beams of the same image)."""
        offsets = tf.range(B)[:, None] * K
        return tf.gather(tensor, tf.reshape(beam_index + offsets, [-1]))

    def group_step(step, log_probs, weights, tokens, alive_log_probs, alive_attention, finished, chosen):
        """One group's candidates (`[B, k, ...]` slices) -> its new alive beams, finished set and chosen words.

        `chosen [B, V]` counts the words earlier groups' alive beams took at this step (Hamming diversity).
        """
        vocabulary = tf.shape(log_probs)[-1]
        totals = alive_log_probs[..., None] + log_probs  # [B, k, V]
        ranking = totals - diversity * tf.cast(chosen, tf.float32)[:, None, :] if G > 1 else totals
        top_ranking, top_index = tf.math.top_k(tf.reshape(ranking, [B, k * vocabulary]), k=2 * k)
        top_totals = tf.gather(tf.reshape(totals, [B, k * vocabulary]), top_index, batch_dims=1)
        beam_index, words = top_index // vocabulary, top_index % vocabulary
        here = tf.equal(steps, step)
        candidates = tf.gather(tokens, beam_index, batch_dims=1)
        candidates = tf.where(here[None, None, :], words[..., None], candidates)
        attention = tf.gather(alive_attention, beam_index, batch_dims=1)
        step_weights = tf.gather(weights, beam_index, batch_dims=1)
        attention = tf.where(here[None, None, :, None], step_weights[:, :, None, :], attention)
        ended = tf.equal(words, end_id)
        # Alive: the best k candidates that did not end, by the ranking (log-probability, minus diversity).
        _, keep = tf.math.top_k(tf.where(ended, 2 * minus_inf, top_ranking), k=k)
        new_alive = (tf.gather(candidates, keep, batch_dims=1), tf.gather(top_totals, keep, batch_dims=1),
                     tf.gather(attention, keep, batch_dims=1))
        new_alive_log_probs = tf.where(tf.gather(ended, keep, batch_dims=1), minus_inf, new_alive[1])
        # Finished: the best k of those finished before and those that ended now, by normalised log-probability.
        finished_tokens, finished_scores, finished_log_probs, finished_attention = finished
        new_scores = tf.where(ended, top_totals / length_penalty(step + 1, alpha), minus_inf)
        best_scores, best = tf.math.top_k(tf.concat([finished_scores, new_scores], axis=1), k=k)
        pick = lambda old, new: tf.gather(tf.concat([old, new], 1), best, batch_dims=1)  # noqa: E731
        finished = (pick(finished_tokens, candidates), best_scores, pick(finished_log_probs, top_totals),
                    pick(finished_attention, attention))
        words_kept = tf.gather(words, keep, batch_dims=1)
        alive_kept = new_alive_log_probs > minus_inf / 2
        chosen += Constraints._scatter(tf.tile(tf.range(B)[:, None], [1, k]), words_kept, alive_kept,
                                       tf.stack([B, vocabulary]))
        return (new_alive[0], new_alive_log_probs, new_alive[2]), finished, tf.gather(beam_index, keep,
                                                                                       batch_dims=1), chosen

    def advance(step, logits, weights, state, loop):
        (alive_tokens, alive_log_probs, alive_attention,
         finished_tokens, finished_scores, finished_log_probs, finished_attention) = loop
        flat_tokens = tf.reshape(alive_tokens, [B * K, L])
        log_probs = tf.reshape(constraints.log_probs(logits, flat_tokens, step), [B, K, -1])
        weights = tf.reshape(weights, [B, K, -1])
        chosen = tf.zeros(tf.stack([B, tf.shape(log_probs)[-1]]), tf.int32)
        parts = []
        for g in range(G):
            group = slice(g * k, (g + 1) * k)
            alive, finished, beam_index, chosen = group_step(
                step, log_probs[:, group], weights[:, group], alive_tokens[:, group], alive_log_probs[:, group],
                alive_attention[:, group], (finished_tokens[:, group], finished_scores[:, group],
                                            finished_log_probs[:, group], finished_attention[:, group]), chosen)
            parts.append((alive, finished, beam_index + g * k))
        join = lambda get: tf.concat([get(part) for part in parts], axis=1)  # noqa: E731
        state = tf.nest.map_structure(lambda t: flat_gather(t, join(lambda p: p[2])), state)
        loop = (join(lambda p: p[0][0]), join(lambda p: p[0][1]), join(lambda p: p[0][2]),
                join(lambda p: p[1][0]), join(lambda p: p[1][1]), join(lambda p: p[1][2]), join(lambda p: p[1][3]))
        return state, loop

    # Step 0 runs outside the loop: its attention gives the buffers' shape.
    logits, state, weights = next_fn(tf.fill([B * K], start_id), state, memory)
    attention_shape = tf.concat([[B, K, L], tf.shape(weights)[1:]], 0)
    zeros_tokens = tf.zeros([B, K, L], tf.int32)
    zeros_attention = tf.zeros(attention_shape, weights.dtype)
    # Only a group's first beam is real at the start; the others are copies that must not be picked.
    first = tf.tile(tf.concat([[0.0], tf.fill([k - 1], minus_inf)], 0), [G])
    alive_log_probs = tf.tile(first[None], [B, 1])
    loop = (zeros_tokens, alive_log_probs, zeros_attention,
            zeros_tokens, tf.fill([B, K], minus_inf), tf.fill([B, K], minus_inf), zeros_attention)
    state, loop = advance(0, logits, weights, state, loop)

    def cond(step, tokens, state, loop):
        alive_log_probs, finished_scores = loop[1], loop[4]
        # The best an alive beam of a group can still reach: its log-prob cannot grow, its penalty can.
        best_alive = tf.reduce_max(tf.reshape(alive_log_probs, [B, G, k]), -1) / length_penalty(L, alpha)
        worst_finished = tf.reduce_min(tf.reshape(finished_scores, [B, G, k]), -1)
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
    alive_scores = tf.where(alive_log_probs > minus_inf / 2, alive_log_probs / length_penalty(L, alpha),
                            2 * minus_inf)
    scores = tf.concat([finished_scores, alive_scores], 1)
    all_tokens = tf.concat([finished_tokens, alive_tokens], 1)
    if G > 1:  # groups search apart: the same caption may end in two of them
        scores = tf.where(_repeats(all_tokens, scores), 3 * minus_inf, scores)
    scores, best = tf.math.top_k(scores, k=K)
    pick = lambda a, b: tf.gather(tf.concat([a, b], 1), best, batch_dims=1)  # noqa: E731
    tokens = pick(finished_tokens, alive_tokens)
    lengths = tf.reduce_sum(tf.cast((tokens != 0) & (tokens != end_id), tf.int32), axis=-1)
    return {"tokens": tokens, "scores": scores, "log_probs": pick(finished_log_probs, alive_log_probs),
            "lengths": lengths, "attention": pick(finished_attention, alive_attention)}


def _repeats(tokens, scores):
    """`[B, M]`: whether a sequence of `tokens [B, M, L]` is also held by a better-scored (or earlier equal) one."""
    same = tf.reduce_all(tf.equal(tokens[:, :, None], tokens[:, None, :]), -1)  # [B, M, M]
    better = (scores[:, None, :] > scores[:, :, None]) | (
        tf.equal(scores[:, None, :], scores[:, :, None]) & (tf.range(tf.shape(scores)[1])[None, :] <
                                                            tf.range(tf.shape(scores)[1])[:, None])[None])
    return tf.reduce_any(same & better, -1)

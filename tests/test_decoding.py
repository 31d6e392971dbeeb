"""Samplers on fixed next-token tables, with exact expected beams."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from captioner import decoding

START, END = 2, 3
A, B, C, D = 4, 5, 6, 7
VOCABULARY = 8


def table_fn(probabilities):
    """A bigram next-token callback: the next word's distribution depends on the last word only."""
    table = np.full((VOCABULARY, VOCABULARY), 1e-12)
    for previous, row in probabilities.items():
        for word, p in row.items():
            table[previous, word] = p
    logits = tf.constant(np.log(table / table.sum(1, keepdims=True)), tf.float32)

    def next_fn(tokens, state, memory):
        attention = tf.one_hot(tokens % 3, 3)  # something per beam to follow through reordering
        return tf.gather(logits, tokens), {"count": state["count"] + 1}, attention

    return next_fn


# start -> A (0.6) | B (0.4); A -> C (0.36) | end (0.34) | D (0.30); B, C, D -> end.
TABLE = {START: {A: 0.6, B: 0.4}, A: {C: 0.36, END: 0.34, D: 0.30}, B: {END: 1.0}, C: {END: 1.0},
         D: {END: 1.0}, END: {A: 1.0}}


def run_greedy(table, batch=2, max_length=6):
    return decoding.greedy_search(table_fn(table), {}, {"count": tf.zeros([batch])}, batch, max_length, START, END)


def run_beam(table, beam, alpha=0.0, batch=2, max_length=6):
    return decoding.beam_search(table_fn(table), {}, {"count": tf.zeros([batch])}, batch, beam, max_length,
                                START, END, alpha)


def words(tokens):
    return [int(t) for t in tokens if t != 0]


def brute_force(table, max_length, alpha):
    """Every ended sequence up to max_length with its penalised score, best first."""
    found = []
    for length in range(1, max_length + 1):
        for body in itertools.product([A, B, C, D], repeat=length - 1):
            sequence, previous, log_p = list(body) + [END], START, 0.0
            for word in sequence:
                p = table.get(previous, {}).get(word, 0.0)
                if p == 0.0:
                    break
                log_p += math.log(p)
                previous = word
            else:
                found.append((log_p / ((5 + length) / 6) ** alpha, sequence))
    return sorted(found, reverse=True)


def test_greedy_follows_the_most_likely_word_and_stops_at_end():
    result = run_greedy(TABLE)
    assert words(result["tokens"][0]) == [A, C, END]
    np.testing.assert_allclose(result["scores"], [math.log(0.6 * 0.36)] * 2, rtol=1e-5)
    np.testing.assert_array_equal(result["lengths"], [2, 2])


def test_beam_one_equals_greedy():
    greedy, beam = run_greedy(TABLE), run_beam(TABLE, 1)
    np.testing.assert_array_equal(beam["tokens"][:, 0], greedy["tokens"])
    np.testing.assert_allclose(beam["scores"][:, 0], greedy["scores"], rtol=1e-5)
    np.testing.assert_allclose(beam["attention"][:, 0], greedy["attention"], atol=1e-6)


def test_beam_finds_a_better_caption_than_greedy():
    result = run_beam(TABLE, 2)
    assert words(result["tokens"][0, 0]) == [B, END]  # p 0.4 beats greedy's A C end (p 0.216)
    assert words(result["tokens"][0, 1]) == [A, C, END]
    np.testing.assert_allclose(result["scores"][0], [math.log(0.4), math.log(0.216)], rtol=1e-5)
    assert float(result["scores"][0, 0]) > float(run_greedy(TABLE)["scores"][0])
    np.testing.assert_array_equal(result["lengths"][0], [1, 2])
    # Each beam's attention comes back with it; here a step's attention encodes the fed token (mod 3):
    # A C end was fed start (2), A (4), C (6).
    np.testing.assert_array_equal(result["attention"][0, 1, :3], [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(result["attention"][0, 1, 3:], 0)


@pytest.mark.parametrize("alpha", [0.0, 5.0])
def test_n_best_matches_exhaustive_search(alpha):
    expected = brute_force(TABLE, 6, alpha)[:3]
    result = run_beam(TABLE, 3, alpha)
    for rank, (score, sequence) in enumerate(expected):
        assert words(result["tokens"][1, rank]) == sequence
        np.testing.assert_allclose(float(result["scores"][1, rank]), score, rtol=1e-5)


def test_length_penalty_changes_the_winner():
    plain, penalised = run_beam(TABLE, 2, alpha=0.0), run_beam(TABLE, 2, alpha=5.0)
    assert words(plain["tokens"][0, 0]) == [B, END]
    assert words(penalised["tokens"][0, 0]) == [A, C, END]
    np.testing.assert_allclose(float(penalised["log_probs"][0, 0]), math.log(0.216), rtol=1e-5)


def test_nothing_follows_the_end_token_and_unended_beams_fill_in():
    # A loop that never ends: start -> A -> A -> ...; beams must still come back, at full length.
    looping = {START: {A: 1.0}, A: {A: 0.9, B: 0.1}, B: {A: 1.0}}
    result = run_beam(looping, 2, max_length=4)
    assert words(result["tokens"][0, 0]) == [A, A, A, A]
    assert np.all(np.asarray(result["lengths"]) == 4)
    ended = run_beam(TABLE, 3)
    for row in np.asarray(ended["tokens"]).reshape(-1, 6):
        end_at = list(row).index(END)
        assert not row[end_at + 1:].any()


def test_beam_search_compiles_with_xla():
    fn = table_fn(TABLE)

    @tf.function(jit_compile=True)
    def search():
        return decoding.beam_search(fn, {}, {"count": tf.zeros([2])}, 2, 2, 6, START, END)

    result = search()
    assert words(result["tokens"][0, 0]) == [B, END]


# A different table per batch row: start's favourite word and how A goes on differ, so each row has its own n-best.
ROW_TABLES = [
    TABLE,
    {START: {A: 0.3, B: 0.25, C: 0.45}, A: {END: 0.6, D: 0.4}, B: {END: 1.0}, C: {D: 0.7, END: 0.3},
     D: {END: 1.0}},
    {START: {D: 0.9, B: 0.1}, B: {END: 1.0}, D: {A: 0.55, END: 0.45}, A: {B: 0.2, END: 0.8}},
]


def rows_fn(tables):
    """A bigram callback with one table per batch row: the state carries the row index through reordering."""
    logits = []
    for probabilities in tables:
        table = np.full((VOCABULARY, VOCABULARY), 1e-12)
        for previous, row in probabilities.items():
            for word, p in row.items():
                table[previous, word] = p
        logits.append(np.log(table / table.sum(1, keepdims=True)))
    logits = tf.constant(np.stack(logits), tf.float32)  # [rows, previous, next]

    def next_fn(tokens, state, memory):
        return (tf.gather_nd(logits, tf.stack([state["row"], tokens], -1)), state,
                tf.one_hot(state["row"], len(tables)))

    return next_fn, {"row": tf.range(len(tables))}


def test_each_batch_row_is_searched_with_its_own_state():
    """Rows that differ (a row index in the state picks each row's table): beam search reorders every row's
    state among that row's beams, so each row's n-best is exhaustive search on its own table; greedy too."""
    next_fn, state = rows_fn(ROW_TABLES)
    rows = len(ROW_TABLES)
    bests = [brute_force(table, 6, 0.0) for table in ROW_TABLES]
    assert len({tuple(best[0][1]) for best in bests}) == rows  # the rows' best captions differ
    for beam, alpha in ((3, 0.0), (2, 5.0)):
        result = decoding.beam_search(next_fn, {}, state, rows, beam, 6, START, END, alpha)
        for row, table in enumerate(ROW_TABLES):
            expected = brute_force(table, 6, alpha)[:beam]
            assert [words(t) for t in result["tokens"][row]] == [s for _, s in expected], (row, beam)
            np.testing.assert_allclose(result["scores"][row], [s for s, _ in expected], rtol=1e-5)
            np.testing.assert_array_equal(result["attention"][row, 0, 0], np.eye(rows)[row])
    greedy = decoding.greedy_search(next_fn, {}, state, rows, 6, START, END)
    for row, table in enumerate(ROW_TABLES):
        previous, expected, log_p = START, [], 0.0
        while previous != END:
            previous, p = max(table[previous].items(), key=lambda item: item[1])
            expected.append(previous)
            log_p += math.log(p)
        assert words(greedy["tokens"][row]) == expected, row
        np.testing.assert_allclose(float(greedy["scores"][row]), log_p, rtol=1e-5)

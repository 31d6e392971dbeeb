"""Decoding controls against brute force: constraints, n-best, sampling, diverse beam search.

Each batch row has a probability table of its own (a bigram model over two words A and B and the end
token), carried in the state so that beams reordered across rows would use the wrong table. Beam search
with 8 beams over two words and at most three steps never prunes a candidate, so its n-best must equal
exhaustive search under the same constraints exactly; greedy search must equal a plain-Python greedy
search; sampling's draw frequencies must match the renormalised probabilities; diverse beam search must
equal a plain-Python implementation of Vijayakumar et al.'s algorithm.
"""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from captioner.decoding import beam_search, greedy_search, sample
from captioner.decoding.constraints import Constraints
from captioner.decoding.sampling import truncate

PAD, UNK, START, END, A, B = range(6)
V = 6
WORDS = (A, B)
BANNED = (PAD, UNK, START)  # UNK banned too: the tables are over A, B and the end token
# Row r: next-word probabilities after START, A and B. Every row differs.
TABLES = [  # no two captions of a row tie
    {START: {A: 0.5, B: 0.3, END: 0.2}, A: {A: 0.44, B: 0.25, END: 0.31}, B: {A: 0.29, B: 0.19, END: 0.52}},
    {START: {A: 0.21, B: 0.68, END: 0.11}, A: {A: 0.12, B: 0.49, END: 0.39}, B: {A: 0.36, B: 0.43, END: 0.21}},
    {START: {A: 0.37, B: 0.34, END: 0.29}, A: {A: 0.58, B: 0.13, END: 0.29}, B: {A: 0.16, B: 0.17, END: 0.67}},
]
ROWS = len(TABLES)


def logits_table():
    table = np.full((ROWS, V, V), 1e-12)
    for row, rows in enumerate(TABLES):
        for previous, probabilities in rows.items():
            for word, p in probabilities.items():
                table[row, previous, word] = p
    return np.log(table / table.sum(-1, keepdims=True)).astype(np.float32)


LOGITS = logits_table()


def next_fn(tokens, state, memory):
    logits = tf.gather_nd(tf.constant(LOGITS), tf.stack([state["row"], tokens], -1))
    weights = tf.one_hot(state["row"], ROWS)  # "attention": the row, followed through reorders
    return logits, state, weights


def initial_state(rows=ROWS):
    return {"row": tf.range(rows, dtype=tf.int32)}


# ------------------------------------------------------------------ plain-Python references


def step_log_probs(row, words, constraints):
    """The constrained next-word log-probabilities after `words`, as `Constraints` defines them."""
    previous = words[-1] if words else START
    logits = LOGITS[row, previous].astype(np.float64)
    if constraints.repetition_penalty != 1:
        for word in set(words):
            logits[word] = logits[word] / constraints.repetition_penalty if logits[word] > 0 else \
                logits[word] * constraints.repetition_penalty
    banned = set(constraints.banned_ids)
    if len(words) < constraints.min_length:
        banned.add(END)
    n = constraints.no_repeat_ngram_size
    if n and len(words) >= n - 1:
        prefix = tuple(words[len(words) - (n - 1):]) if n > 1 else ()
        for start in range(len(words) - n + 1):
            if tuple(words[start:start + n - 1]) == prefix:
                banned.add(words[start + n - 1])
    allowed = [w for w in range(V) if w not in banned]
    top = max(logits[w] for w in allowed)
    total = math.log(sum(math.exp(logits[w] - top) for w in allowed)) + top
    return {w: logits[w] - total for w in allowed}


def exhaustive(row, constraints, length, alpha):
    """Every caption of at most `length` steps with its beam score, best first (ended: normalised at its length;
    unended: at full length, as beam search tops up)."""
    found = []
    for count in range(length + 1):
        for words in itertools.product(WORDS, repeat=count):
            log_p, prefix, ok = 0.0, [], True
            for word in words:
                options = step_log_probs(row, prefix, constraints)
                if word not in options:
                    ok = False
                    break
                log_p += options[word]
                prefix.append(word)
            if not ok:
                continue
            if count < length:
                options = step_log_probs(row, prefix, constraints)
                if END in options:
                    steps = count + 1
                    found.append(((log_p + options[END]) / ((5 + steps) / 6) ** alpha, list(words) + [END]))
            else:
                found.append((log_p / ((5 + length) / 6) ** alpha, list(words)))
    return sorted(found, key=lambda pair: -pair[0])


def python_greedy(row, constraints, length):
    words, total = [], 0.0
    for _ in range(length):
        options = step_log_probs(row, words, constraints)
        word = max(options, key=options.get)
        total += options[word]
        words.append(word)
        if word == END:
            break
    return words, total


def as_words(tokens):
    return [int(t) for t in tokens if t != 0]


CONSTRAINTS = {
    "none": Constraints(END, BANNED),
    "min_length": Constraints(END, BANNED, min_length=2),
    "no_repeat_2": Constraints(END, BANNED, no_repeat_ngram_size=2),
    "no_repeat_1": Constraints(END, BANNED, no_repeat_ngram_size=1),
    "repetition_penalty": Constraints(END, BANNED, repetition_penalty=1.8),
    "ban_a": Constraints(END, BANNED + (A,)),
    "all": Constraints(END, BANNED, min_length=1, no_repeat_ngram_size=2, repetition_penalty=1.3),
}


@pytest.mark.parametrize("name", list(CONSTRAINTS))
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_n_best_equals_exhaustive_search_under_each_constraint(name, alpha):
    constraints, length, beam = CONSTRAINTS[name], 3, 8
    result = beam_search(next_fn, {}, initial_state(), ROWS, beam, length, START, END, alpha=alpha,
                         constraints=constraints)
    for row in range(ROWS):
        expected = [pair for pair in exhaustive(row, constraints, length, alpha) if pair[0] > -20][:beam]
        assert len(expected) >= 2  # real alternatives
        for rank, (score, words) in enumerate(expected):
            assert as_words(result["tokens"][row, rank]) == words, (name, row, rank)
            np.testing.assert_allclose(float(result["scores"][row, rank]), score, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(result["attention"][row, 0, 0], np.eye(ROWS)[row])  # its own row's table


@pytest.mark.parametrize("name", list(CONSTRAINTS))
def test_greedy_equals_a_plain_greedy_search_under_each_constraint(name):
    constraints = CONSTRAINTS[name]
    result = greedy_search(next_fn, {}, initial_state(), ROWS, 3, START, END, constraints=constraints)
    for row in range(ROWS):
        words, total = python_greedy(row, constraints, 3)
        assert as_words(result["tokens"][row]) == words
        np.testing.assert_allclose(float(result["log_probs"][row]), total, rtol=1e-5)


def test_constraints_do_what_they_say():
    lengths = {name: [] for name in CONSTRAINTS}
    for name, constraints in CONSTRAINTS.items():
        result = beam_search(next_fn, {}, initial_state(), ROWS, 8, 3, START, END, constraints=constraints)
        for row in range(ROWS):
            for rank in range(3):
                words = as_words(result["tokens"][row, rank])
                body = [w for w in words if w != END]
                lengths[name].append(len(body))
                if name == "min_length":
                    assert len(body) >= 2
                if name == "ban_a":
                    assert A not in words
                if name == "no_repeat_1":
                    assert len(set(body)) == len(body)
                if name == "no_repeat_2":
                    bigrams = list(zip(body, body[1:]))
                    assert len(set(bigrams)) == len(bigrams)


def draws(count, **settings):
    """The first word of `count` samples from row 0's table (one step)."""
    constraints = settings.pop("constraints", Constraints(END, BANNED))
    state = {"row": tf.zeros([count], tf.int32)}
    return sample(next_fn, {}, state, count, 1, START, END, constraints=constraints, **settings)["tokens"][:, 0]


def chi_square(counts, expected_probabilities, total):
    expected = np.asarray(expected_probabilities) * total
    return float(np.sum((np.asarray(counts) - expected) ** 2 / expected))


CHI_SQUARE_999 = {1: 10.83, 2: 13.82}  # the 0.999 quantiles: a correct sampler fails one run in a thousand


@pytest.mark.parametrize("settings, support", [
    (dict(), {A: 0.5, B: 0.3, END: 0.2}),  # row 0 after START
    (dict(top_k=2), {A: 0.5 / 0.8, B: 0.3 / 0.8}),
    (dict(top_p=0.7), {A: 0.5 / 0.8, B: 0.3 / 0.8}),  # 0.5 < 0.7 <= 0.8: A and B
    (dict(top_p=0.5), {A: 1.0}),  # A alone holds 0.5
    (dict(temperature=0.5), {A: 0.25 / 0.38, B: 0.09 / 0.38, END: 0.04 / 0.38}),
])
def test_sampled_words_follow_the_renormalised_distribution(settings, support):
    total = 20000
    drawn = draws(total, seed=7, **settings).numpy()
    assert set(np.unique(drawn)) <= set(support)
    if len(support) > 1:
        words = sorted(support)
        counts = [int(np.sum(drawn == w)) for w in words]
        assert chi_square(counts, [support[w] for w in words], total) < CHI_SQUARE_999[len(words) - 1]


def test_truncation_keeps_the_nucleus():
    log_probs = tf.math.log(tf.constant([[0.05, 0.4, 0.3, 0.25]]))
    np.testing.assert_array_equal(np.isfinite(truncate(log_probs, top_p=0.6).numpy()) &
                                  (truncate(log_probs, top_p=0.6).numpy() > -1e8), [[False, True, True, False]])
    np.testing.assert_array_equal(truncate(log_probs, top_k=3).numpy() > -1e8, [[False, True, True, True]])
    np.testing.assert_array_equal(truncate(log_probs, top_k=50).numpy(), log_probs.numpy())  # K above V: all words


def test_a_seed_repeats_the_same_samples_and_another_seed_differs():
    first, again, other = (sample(next_fn, {}, {"row": tf.range(30) % ROWS}, 30, 3, START, END,
                                  constraints=CONSTRAINTS["none"], seed=seed)["tokens"].numpy()
                           for seed in (11, 11, 12))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def python_diverse_beam(row, constraints, length, beam, groups, strength, alpha):
    """Vijayakumar et al.'s diverse beam search (Hamming diversity), step by step as the paper writes it,
    with beam search's finished sets: returns every group's captions (score, words), best first."""
    size = beam // groups
    alive = [[([], 0.0)] for _ in range(groups)]  # per group: (words, log-prob)
    finished = [[] for _ in range(groups)]
    for step in range(length):
        chosen = {}  # word -> how many earlier groups' beams chose it at this step
        for group in range(groups):
            candidates = []
            for words, log_p in alive[group]:
                for word, lp in step_log_probs(row, words, constraints).items():
                    candidates.append((log_p + lp - strength * chosen.get(word, 0), log_p + lp, words + [word]))
            candidates.sort(key=lambda c: -c[0])
            candidates = candidates[:2 * size]
            for _, total, words in candidates:
                if words[-1] == END:
                    finished[group].append((total / ((5 + step + 1) / 6) ** alpha, words))
            finished[group] = sorted(finished[group], key=lambda f: -f[0])[:size]
            alive[group] = [(words, total) for _, total, words in candidates if words[-1] != END][:size]
            for words, _ in alive[group]:
                chosen[words[-1]] = chosen.get(words[-1], 0) + 1
    results = []
    for group in range(groups):
        results += finished[group] + [(lp / ((5 + length) / 6) ** alpha, words) for words, lp in alive[group]]
    unique = {}
    for score, words in sorted(results, key=lambda r: -r[0]):
        unique.setdefault(tuple(words), score)
    return sorted(((s, list(w)) for w, s in unique.items()), key=lambda r: -r[0])[:beam]


@pytest.mark.parametrize("strength", [0.0, 0.5, 3.0])
@pytest.mark.parametrize("groups", [2, 4])
def test_diverse_beam_search_equals_the_papers_algorithm(groups, strength):
    constraints, length, beam = CONSTRAINTS["none"], 3, 4
    result = beam_search(next_fn, {}, initial_state(), ROWS, beam, length, START, END, alpha=0.6,
                         constraints=constraints, groups=groups, diversity=strength)
    for row in range(ROWS):
        expected = python_diverse_beam(row, constraints, length, beam, groups, strength, 0.6)
        got = [(float(result["scores"][row, rank]), as_words(result["tokens"][row, rank])) for rank in range(beam)]
        got = [pair for pair in got if pair[0] > -1e8]
        assert [words for _, words in got] == [words for _, words in expected], (row, got, expected)
        np.testing.assert_allclose([score for score, _ in got], [score for score, _ in expected], rtol=1e-5)


def test_diversity_makes_the_groups_differ():
    plain = beam_search(next_fn, {}, initial_state(), ROWS, 4, 3, START, END, constraints=CONSTRAINTS["none"],
                        groups=2, diversity=0.0)
    diverse = beam_search(next_fn, {}, initial_state(), ROWS, 4, 3, START, END, constraints=CONSTRAINTS["none"],
                          groups=2, diversity=5.0)
    first_words = lambda result: {int(result["tokens"][row, rank, 0]) for row in range(ROWS) for rank in range(4)}  # noqa: E731
    assert len(first_words(diverse)) >= len(first_words(plain))
    distinct = lambda result: [len({tuple(as_words(t)) for t in result["tokens"][row]}) for row in range(ROWS)]  # noqa: E731
    assert distinct(diverse) == [4] * ROWS  # n-best across groups are distinct captions


def test_no_caption_runs_past_its_most_words():
    looping = Constraints(END, BANNED + (END,))  # the end token banned: captions would never end
    capped = Constraints(END, BANNED, max_words=2)  # at most 2 words, then only the end token
    for constraints, ended in ((looping, False), (capped, True)):
        greedy = greedy_search(next_fn, {}, initial_state(), ROWS, 3, START, END, constraints=constraints)
        beams = beam_search(next_fn, {}, initial_state(), ROWS, 2, 3, START, END, constraints=constraints)
        drawn = sample(next_fn, {}, initial_state(), ROWS, 3, START, END, constraints=capped if ended else looping,
                       seed=1)
        for tokens in [greedy["tokens"], drawn["tokens"], beams["tokens"][:, 0]]:
            ends = [list(row).index(END) if END in row else None for row in np.asarray(tokens)]
            assert all(end is not None and end <= 2 for end in ends) if ended else ends == [None] * ROWS, ends


def test_settings_that_are_not_finite_numbers_are_refused():
    from captioner.decoding.settings import Decoding

    for fields in (dict(beam_size=3, alpha=float("nan")), dict(sample=True, temperature=float("nan")),
                   dict(repetition_penalty=float("inf")), dict(sample=True, top_p=float("nan"))):
        with pytest.raises(ValueError, match="finite"):
            Decoding(**fields).validated()
    with pytest.raises(ValueError, match="alpha must be 0 or more"):  # greedy's alpha is dropped only when valid
        Decoding(beam_size=1, alpha=-1).validated()

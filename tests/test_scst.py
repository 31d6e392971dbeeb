"""Self-critical training: the CIDEr-D reward, the baselines, the sampler, and the stage as a run."""

import collections
import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer

import captioner
from captioner import decoding, runs
from captioner.evaluation import cider
from captioner.training import scst
from captioner.data import coco
from captioner.data import tokenizer as tokenizer_lib

END = tokenizer_lib.END_ID


def padded(sequences, length=None):
    length = length or max(len(s) for s in sequences)
    out = np.zeros((len(sequences), length), np.int32)
    for row, sequence in enumerate(sequences):
        out[row, :len(sequence)] = sequence
    return out


def reference_array(references):
    most = max(len(r) for r in references)
    longest = max(len(c) for r in references for c in r)
    out = np.zeros((len(references), most, longest), np.int32)
    for i, refs in enumerate(references):
        out[i, :len(refs)] = padded(refs, longest)
    return out


def as_text(ids):
    return " ".join(str(i) for i in ids)


@pytest.fixture(scope="module")
def shapes_references(small_shapes):
    """The small Shapes set's training references as the reward sees them: token ids with the end token."""
    train = coco.read_split(small_shapes, "train")
    words = tokenizer_lib.build_vocabulary([c for e in train.examples for c in e.captions], 1)
    tokenizer = tokenizer_lib.CaptionTokenizer(words)
    return tokenizer, cider.reference_ids(tokenizer, train.examples, 30, END)


def candidates_for(references, rng):
    """Real captions, cut ones, shuffled ones and one-word ones: what samples look like early and late."""
    candidates = []
    for i, refs in enumerate(references):
        pick = list(refs[rng.integers(len(refs))])
        kind = i % 4
        if kind == 1:
            pick = pick[:max(1, len(pick) // 2)]  # cut mid-phrase, no end token
        elif kind == 2:
            pick = list(rng.permutation(pick[:-1])) + [END]
        elif kind == 3:
            pick = pick[:1] + [END]
        candidates.append(pick)
    return candidates


def test_reward_equals_pycocoevalcap_cider_d_with_the_same_document_frequencies(shapes_references):
    tokenizer, references = shapes_references
    rng = np.random.default_rng(0)
    candidates = candidates_for(references, rng)
    # 1. Frequencies of the scored images' own references: exactly what pycocoevalcap's Cider computes.
    gts = {i: [as_text(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [as_text(c)] for i, c in enumerate(candidates)}
    _, theirs = Cider().compute_score(gts, res)
    frequencies = cider.DocumentFrequencies.from_references(references, tokenizer.vocabulary_size)
    reward = cider.CiderD(frequencies)
    ours = reward(padded(candidates, 31), reference_array(references)).numpy()
    assert ours.dtype == np.float64 and ours.shape == (len(references),)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    assert ours.std() > 0.5  # the candidates differ: the comparison is not of constants
    # 2. Training frequencies (stored once) scoring other images' captions. pycocoevalcap takes D as the
    # number of reference sets it holds: it is given as many as the training set has (the scored images'
    # and fillers whose scores are not read) and the training frequencies in place of its own count.
    train, scored = references[:150], references[150:]
    frequencies = cider.DocumentFrequencies.from_references(train, tokenizer.vocabulary_size)
    scorer = CiderScorer(n=4, sigma=6.0)
    for refs, candidate in zip(scored, candidates[150:]):
        scorer += (as_text(candidate), [as_text(r) for r in refs])
    for refs in train[:len(train) - len(scored)]:
        scorer += (as_text(refs[0]), [as_text(r) for r in refs])
    scorer.document_frequency = collections.defaultdict(
        float, frequencies.as_dict(words=[str(i) for i in range(tokenizer.vocabulary_size)]))
    theirs = scorer.compute_cider()[:len(scored)]
    ours = cider.CiderD(frequencies)(padded(candidates[150:], 31), reference_array(scored)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    assert not np.allclose(ours, Cider().compute_score(
        {i: gts[150 + i] for i in range(len(scored))}, {i: res[150 + i] for i in range(len(scored))})[1])


def test_reward_equals_pycocoevalcap_on_hand_made_edge_cases():
    """Empty and one-word candidates, repeated n-grams, 1 to 3 references (padding rows), duplicate references."""
    references = [
        [[5, 6, 7, END]],                                   # one reference: two padding rows
        [[5, 6, 7, 8, END], [5, 6, 7, 8, END]],            # a duplicate reference
        [[5, 5, 5, 5, END], [9, 10, END], [6, 7, 8, 9, 10, 11, END]],
        [[7, END], [8, 9, END], [5, 6, 7, 8, 9, 10, 11, 12, END]],
        [[10, 11, 12, END], [12, 11, 10, END]],
    ]
    candidates = [[], [5], [5, 5, 5, 5, 5, 5, END], [7, END], [10, 11, 12, 10, 11, 12]]
    gts = {i: [as_text(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [as_text(c)] for i, c in enumerate(candidates)}
    scorer = CiderScorer(n=4, sigma=6.0)
    for i in range(len(references)):
        scorer += (res[i][0], gts[i])
    _, theirs = scorer.compute_score()
    frequencies = cider.DocumentFrequencies.from_references(references, 20)
    ours = cider.CiderD(frequencies)(padded(candidates, 9), reference_array(references)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    assert ours[0] == 0.0 and ours[3] > 0


def test_a_caption_cut_mid_phrase_scores_below_its_complete_twin(shapes_references):
    tokenizer, references = shapes_references
    frequencies = cider.DocumentFrequencies.from_references(references, tokenizer.vocabulary_size)
    reward = cider.CiderD(frequencies)
    a = tokenizer.words.index("a")
    pairs, groups = [], []
    for refs in references[:60]:
        for complete in refs:
            articles = [i for i, w in enumerate(complete[:-1]) if w == a and i > 2]
            if articles:  # cut after "... and a", no end token: a sample stopped by the length limit
                pairs += [complete, complete[:articles[-1] + 1]]
                groups += [refs, refs]
    assert len(pairs) > 40
    scores = reward(padded(pairs, 31), reference_array(groups)).numpy().reshape(-1, 2)
    assert (scores[:, 0] > scores[:, 1]).all(), scores


def test_document_frequencies_are_stored_once_and_read_back(tmp_path, shapes_references):
    tokenizer, references = shapes_references
    frequencies = cider.DocumentFrequencies.from_references(references, tokenizer.vocabulary_size)
    path = str(tmp_path / cider.FILE_NAME)
    frequencies.save(path)
    again = cider.DocumentFrequencies.load(path)
    assert again.documents == len(references) and again.as_dict() == frequencies.as_dict()
    # Unigram frequencies: each word counted once per image whose references hold it.
    end_df = frequencies.as_dict()[(END,)]
    assert end_df == len(references)


def test_new_self_critical_advantages_sum_to_zero_per_image():
    rewards = tf.constant([[1.0, 2.0, 3.0, 6.0], [0.5, 0.5, 0.5, 0.5]], tf.float64)
    baseline = scst.mean_baseline(rewards).numpy()
    np.testing.assert_allclose(baseline[0], [11 / 3, 10 / 3, 3.0, 2.0])
    advantage = rewards.numpy() - baseline
    np.testing.assert_allclose(advantage.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(advantage[1], 0.0)


def tiny_captioner(decoder="lstm"):
    from captioner import config as config_lib
    from captioner.models.captioner import build_captioner

    config = config_lib.preset("tiny", decoder=decoder, image_size=32, feature_dim=8, embed_dim=8, hidden_dim=16,
                               model_dim=8, attention_dim=8, num_heads=2, max_length=6)
    words = ["a", "red", "blue", "circle", "square", "and"]
    return build_captioner(config, words)


@pytest.mark.parametrize("baseline", ["mean", "greedy"])
def test_advantages_with_each_baseline(baseline):
    model = tiny_captioner()
    references = tf.constant(reference_array([[[5, 6, 8, END], [5, 7, 9, END]]] * 2))
    frequencies = cider.DocumentFrequencies.from_references([[[5, 6, 8, END], [5, 7, 9, END]]] * 3,
                                                            model.tokenizer.vocabulary_size)
    trainer = scst.SelfCriticalTrainer(model, cider.CiderD(frequencies), samples=3, baseline=baseline)
    tokens = tf.constant([[[5, 6, 8, END, 0, 0, 0], [5, 6, END, 0, 0, 0, 0], [9, 9, 9, END, 0, 0, 0]]] * 2)
    greedy = tf.constant([[5, 7, 9, END, 0, 0, 0]] * 2)
    rewards, base, advantage = trainer.advantages(tokens, references, greedy)
    assert rewards[0, 0] > rewards[0, 1] > rewards[0, 2]
    if baseline == "mean":
        np.testing.assert_allclose(tf.reduce_sum(advantage, 1).numpy(), 0.0, atol=1e-5)
    else:
        expected = cider.CiderD(frequencies)(greedy, references).numpy()
        np.testing.assert_allclose(base.numpy(), np.tile(expected[:, None], [1, 3]))
        np.testing.assert_allclose(advantage.numpy(), (rewards - base).numpy(), rtol=1e-6)


def test_sampling_draws_from_the_model_distribution_and_never_padding_or_start():
    probabilities = np.array([0.3, 0.2, 0.1, 0.15, 0.25, 0.0])  # ids 0 (pad) and 1 (start) are banned
    logits = tf.math.log(tf.constant(probabilities + 1e-12, tf.float32))

    def next_fn(tokens, state, memory):
        n = tf.shape(tokens)[0]
        return tf.tile(logits[None], [n, 1]), state, tf.zeros([n, 1])

    n = 4000
    drawn = decoding.sample(next_fn, {}, {"h": tf.zeros([n, 1])}, n, 8, start_id=1, end_id=2, banned_ids=(0, 1),
                            seed=3)
    tokens = drawn["tokens"].numpy()
    first = tokens[:, 0]
    assert not np.isin(tokens[tokens > 0], [1]).any() and (first != 0).all()
    allowed = probabilities[2:] / probabilities[2:].sum()
    counts = np.bincount(first, minlength=6)[2:] / n
    np.testing.assert_allclose(counts, allowed, atol=0.03)
    # After the end token (id 2) only padding; the lengths count the words before it.
    for row, length in zip(tokens[:50], drawn["lengths"].numpy()[:50]):
        ends = np.flatnonzero(row == 2)
        if ends.size:
            assert (row[ends[0] + 1:] == 0).all() and length == ends[0]
        else:
            assert length == 8


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_a_train_step_moves_the_model_toward_high_reward_captions(decoder):
    """Two kinds of image (red, blue) with references of their own: SCST steps raise the reward of what the model
    samples, and each kind's greedy caption comes to earn its own references' reward, not the other kind's (a
    reward paired with another image's references would teach the swapped captions)."""
    keras.utils.set_random_seed(0)
    model = tiny_captioner(decoder)
    red, blue = [[5, 8, END]], [[6, 7, END]]  # "red square", "blue circle"
    frequencies = cider.DocumentFrequencies.from_references([red, blue], model.tokenizer.vocabulary_size)
    trainer = scst.SelfCriticalTrainer(model, cider.CiderD(frequencies), samples=16)
    trainer.compile(optimizer=keras.optimizers.Adam(0.01))
    colours = tf.constant([[0.85, 0.05, 0.05], [0.05, 0.05, 0.85]] * 2)[:, None, None, :]  # red, blue, red, blue
    images = keras.random.uniform((4, 32, 32, 3), seed=1) * 0.1 + colours
    refs = tf.constant(reference_array([red, blue] * 2))
    others = tf.constant(reference_array([blue, red] * 2))
    data = tf.data.Dataset.from_tensors(({"images": images, "tokens": tf.zeros([4, 1, 2], tf.int32)}, refs))
    reward = cider.CiderD(frequencies)

    def greedy_rewards(references):
        return reward(model.generate(images, beam_size=1)["tokens"], references).numpy()

    before = greedy_rewards(refs).mean()
    history = trainer.fit(data.repeat(10), epochs=4, verbose=0)
    rewards = history.history["reward"]
    assert trainer.optimizer.iterations.numpy() == 40
    assert rewards[-1] > rewards[0] + 1.0, rewards  # the samples' mean CIDEr-D (0..10 here)
    own, other = greedy_rewards(refs), greedy_rewards(others)
    assert (own > other + 1.0).all(), (own, other)  # each image's caption is its own kind's
    assert own.mean() > before + 1.0


@pytest.mark.slow
def test_the_stage_is_a_run_that_survives_sigkill_and_loads_like_any_other(scst_run):
    run_dir, parent_dir = scst_run["run_dir"], scst_run["parent"]
    assert not scst_run["finished_when_killed"]
    assert scst_run["returncode"] == 0, scst_run["output"][-3000:]
    killed_at = scst_run["killed_at"]
    # Killed mid-epoch (after the epoch's own backup there would be nothing to resume), and resumed from there.
    assert killed_at["epoch"] == 0 and 0 < killed_at["batch"] < killed_at["step"] < 20, killed_at
    assert (f"Restored the backup of epoch 1, batch {killed_at['batch']} (optimizer step {killed_at['step']})"
            in scst_run["output"]), scst_run["output"][-3000:]
    # The run folder's contract, plus the stage's own files.
    for name in ("config.json", "vocab.txt", "model.keras", "metrics.json", "log.csv", "scst.json",
                 cider.FILE_NAME, "decoding.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert not os.path.exists(os.path.join(run_dir, "backup"))
    settings = runs.read_json(os.path.join(run_dir, "scst.json"))
    assert settings["parent"] == os.path.abspath(parent_dir) and settings["samples"] == 5
    config = runs.load_config(run_dir)
    assert config.learning_rate == scst.STAGE_DEFAULTS["tiny"]["learning_rate"] and config.epochs == 1
    assert config.decoder == runs.load_config(parent_dir).decoder
    with open(os.path.join(run_dir, "log.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0"] and float(rows[0]["val_cider_d"]) > 0
    metrics = runs.read_json(os.path.join(run_dir, "metrics.json"))
    assert metrics["stage"] == "self-critical" and metrics["parent"] == os.path.abspath(parent_dir)
    # The model loads in safe mode with its recorded decoding; its weights are the best epoch's if one beat
    # the parent's validation CIDEr-D, else the parent's.
    parent, child = runs.load(parent_dir), captioner.load(run_dir)
    from conftest import assert_kept_only_if_better

    assert_kept_only_if_better(run_dir, parent, child)
    choice = runs.read_json(os.path.join(run_dir, "decoding.json"))
    from captioner.training import decoding_search

    assert child.default_decoding == decoding_search.setting(choice)
    # A finished stage is not run over again.
    from conftest import run_stage

    assert run_stage(parent_dir, run_dir).wait(timeout=300) == 2


def test_stage_flags_are_checked_before_any_work(tmp_path, quick_run, capsys):
    from captioner import train

    with pytest.raises(SystemExit) as exit_info:  # usage errors: argparse's exit status 2
        train.main(["--scst-from", quick_run, "--decoder", "transformer"])
    assert exit_info.value.code == 2 and "--decoder: not a setting of the self-critical stage" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--scst-from", quick_run, "--baseline", "mean", "--samples", "1"])
    assert exit_info.value.code == 2 and "the mean baseline needs at least 2 samples" in capsys.readouterr().err
    assert train.main(["--scst-from", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "out")]) == 2
    assert not os.path.exists(tmp_path / "out")


def stage_trainer(policy, samples, optimizer):
    """A tiny LSTM's self-critical trainer built under `policy` (the same initial weights under any)."""
    from captioner.training import cross_entropy

    with cross_entropy.dtype_policy(policy):
        keras.utils.set_random_seed(0)
        model = tiny_captioner()
        frequencies = cider.DocumentFrequencies.from_references([[[5, 6, 8, END]], [[7, 9, END]]],
                                                                model.tokenizer.vocabulary_size)
        trainer = scst.SelfCriticalTrainer(model, cider.CiderD(frequencies), samples=samples)
    trainer.compile(optimizer=optimizer)
    return trainer


def one_image_data(batch, steps=1):
    images = keras.random.uniform((batch, 32, 32, 3), seed=1)
    refs = tf.constant(reference_array([[[5, 6, 8, END]]] * batch))
    data = tf.data.Dataset.from_tensors(({"images": images, "tokens": tf.zeros([batch, 1, 2], tf.int32)}, refs))
    return data.repeat(steps)


def spy_on_scale_loss(optimizer):
    """Records each loss the optimizer's `scale_loss` is given (at tracing, in a traced step)."""
    calls, scale_loss = [], optimizer.scale_loss

    def spy(loss):
        calls.append(loss)
        return scale_loss(loss)

    optimizer.scale_loss = spy
    return calls


@pytest.mark.slow
def test_under_mixed_float16_the_stage_scales_its_loss():
    """Under mixed_float16 compile() wraps the optimizer in a LossScaleOptimizer, which unscales the gradients
    it is given: the train step must scale its loss (`optimizer.scale_loss`), or every update is 2**-15 of what
    it should be. One SGD step on the same captions moves the weights as far as under float32."""
    trainer = stage_trainer("mixed_float16", 2, keras.optimizers.Adam(1e-3))
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    calls = spy_on_scale_loss(trainer.optimizer)
    logs = trainer.fit(one_image_data(2, steps=3), epochs=1, verbose=0).history  # sampling under float16
    assert np.isfinite(logs["loss"][0]) and trainer.optimizer.iterations.numpy() == 3
    assert calls, "the traced train step never called the optimizer's scale_loss"

    # The same drawn captions under both policies (sampling itself differs in float16): the same advantages.
    drawn = tf.constant(np.stack([padded([[5, 6, 8, END], [7, 9, END], [5, 6, END], [9, 9, 9, END]], 7)] * 2))
    moved = {}
    for policy in ("float32", "mixed_float16"):
        trainer = stage_trainer(policy, 4, keras.optimizers.SGD(1.0))
        trainer.draw = lambda features: (drawn, None)
        before = [v.numpy() for v in trainer.trainable_weights]
        logs = trainer.train_step(next(iter(one_image_data(2))))  # eagerly: no tracing to wait for
        assert float(logs["reward"]) > 1.0 and int(trainer.optimizer.iterations.numpy()) == 1
        moved[policy] = np.sqrt(sum(np.sum((v.numpy() - b) ** 2) for v, b in zip(trainer.trainable_weights, before)))
    assert float(trainer.optimizer.dynamic_scale.numpy()) == 2.0 ** 15  # the step was taken, not skipped
    assert moved["float32"] > 1.0 and moved["mixed_float16"] / moved["float32"] == pytest.approx(1.0, abs=0.02), moved

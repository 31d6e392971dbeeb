"""A run's life around `fit()`, shared by both training stages: the folder, the vocabulary, resuming, finishing.

    check_run_dir    refuse a finished folder or one of another config; say whether to resume
    fit_resumably    `fit()` from the last backup, or not at all when the backup says it had finished
    finish           best weights, the decoding default, `model.keras`, the test metrics
"""

import dataclasses
import os
import shutil
import time

import keras

from captioner import runs
from captioner.console import log
from captioner.data import tokenizer as tokenizer_lib
from captioner.evaluation import metrics as metrics_lib
from captioner.evaluation import scoring
from captioner.models.captioner import build_captioner, describe_decoding
from captioner.training import decoding_search
from captioner.training.callbacks import BACKUP, RunBackup, truncate_log
from captioner.training.distribute import is_chief, is_multi_worker, share_from_chief


def check_run_dir(run_dir, config):
    """Refuses a finished run folder, or an unfinished one made with another config.

    Returns True if the folder holds an unfinished run of this config (to resume).
    """
    if runs.is_finished(run_dir):
        raise FileExistsError(f"{run_dir} already holds a finished run; choose another --run-dir")
    config_path = os.path.join(run_dir, runs.CONFIG)
    if os.path.exists(config_path):
        try:
            saved = runs.load_config(run_dir)
        except (ValueError, TypeError) as error:  # includes malformed JSON
            raise ValueError(f"{config_path} is not a valid config ({error}); choose another --run-dir") from None
        if saved != config:
            differences = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                           if getattr(config, k) != v}
            raise ValueError(
                f"{run_dir} holds an unfinished run with another config (saved, requested): {differences}; "
                "rerun with its settings to resume, or choose another --run-dir")
        return True
    return False


def build_vocabulary(config, data, run_dir, write=True):
    path = os.path.join(run_dir, runs.VOCAB)
    if os.path.exists(path):
        return tokenizer_lib.load_vocabulary(path)
    captions = [c for e in data.train.examples for c in e.captions]
    words = tokenizer_lib.build_vocabulary(captions, config.min_count)
    if not write:
        return tokenizer_lib.CaptionTokenizer(words).words  # as the chief's file reads back
    tokenizer_lib.save_vocabulary(tokenizer_lib.CaptionTokenizer(words), path)
    return tokenizer_lib.load_vocabulary(path)


def copy_weights(source, target):
    if len(source.weights) != len(target.weights):
        raise RuntimeError("The rebuilt model does not match the trained one")
    for a, b in zip(source.weights, target.weights):
        if a.shape != b.shape:
            raise RuntimeError(f"Weight {a.path} {a.shape} does not match {b.path} {b.shape}")
        b.assign(keras.ops.convert_to_numpy(a))


def fit_resumably(model, train_data, val_data, steps, config, run_dir, strategy, all_callbacks, verbose):
    """`model.fit()` that resumes from the run's backup; returns the seconds spent.

    `all_callbacks` are `callbacks()`'s (their `RunBackup` among them) and any
    extra ones. A run whose backup says it had finished, or had already met
    early stopping's condition, is not fitted again: its last weights are loaded.
    """
    backup_dir = os.path.join(run_dir, BACKUP)
    state = RunBackup.read_state(backup_dir)
    if state is not None and is_chief(strategy):
        truncate_log(run_dir, state["epoch"])
    started = time.time()
    if state is not None and (state.get("done") or RunBackup.stopped_early(state, config.patience)):
        log("Training had finished before the interruption; saving and testing")
        model.load_weights(os.path.join(backup_dir, state["weights"]))
    else:
        fixed_steps = strategy is not None or config.steps_per_epoch
        model.fit(train_data, epochs=config.epochs, steps_per_epoch=steps if fixed_steps else None,
                  validation_data=val_data, shuffle=False, callbacks=all_callbacks, verbose=verbose)
        next(c for c in all_callbacks if isinstance(c, RunBackup)).mark_done()
    return time.time() - started


def finish(config, run_dir, data, captioner, model, vocabulary, strategy, started, train_seconds, extra=None):
    """After `fit()`: best weights, the decoding default, `model.keras`, test metrics; returns the metrics.

    The saved model is rebuilt in float32 outside any strategy, so it loads and
    decodes anywhere. Its decoding default is chosen on validation images
    (`captioner.training.decoding_search`, `config.search_images`; 0 keeps greedy). The
    test split is captioned greedily (nltk BLEU, as every run reports) and, when
    the default is another setting, with it too. `extra` is added to the metrics.
    Non-chief workers write nothing and return None.
    """
    chief = is_chief(strategy)
    if not chief:
        log("Worker finished training; waiting while the chief saves and tests the model")
        share_from_chief(strategy, {"finished": 0.0})  # returns when the chief is done
        return None
    best = os.path.join(run_dir, runs.BEST_WEIGHTS)
    if os.path.exists(best):
        model.load_weights(best)
    final = build_captioner(config.replace(encoder_weights=None), vocabulary)
    copy_weights(captioner, final)
    choice_path = os.path.join(run_dir, decoding_search.FILE_NAME)
    if os.path.exists(choice_path):  # a rerun after a crash between the search and the metrics
        choice = runs.read_json(choice_path)
    elif config.search_images:
        log(f"Choosing the decoding default on {min(config.search_images, len(data.val.examples))} "
            f"{data.val.name} images ...")
        choice = decoding_search.choose(final, data.val, config.eval_batch_size, config.search_images)
        decoding_search.record(run_dir, choice)
    else:
        choice = {"beam_size": 1, "alpha": 0.0, "images": 0, "table": [], "note": "no search (search_images 0)"}
    final.default_decoding = decoding_search.setting(choice)
    log(f"Decoding default: {describe_decoding(choice['beam_size'], choice['alpha'])}")
    runs.save_model(final, os.path.join(run_dir, runs.MODEL))
    log("Captioning the test split (greedy) ...")
    scores, captions = scoring.score_split(final, data.test, config.eval_batch_size)
    references = list(scoring.references_of(data.test).values())
    scores["cider_d"] = metrics_lib.cider_d(references, [c or "<empty>" for c in captions])[0]
    predictions = [{"image_id": e.image_id, "caption": c} for e, c in zip(data.test.examples, captions)]
    runs.write_json(os.path.join(run_dir, f"predictions_{data.test.name}.json"), predictions)
    default = {**final.default_decoding, "chosen_on": (f"{choice['images']} {data.val.name} images"
                                                       if choice["images"] else "no search (--search-images 0)")}
    if final.default_decoding["beam_size"] > 1:
        log("Captioning the test split with the decoding default ...")
        outputs = scoring.caption_examples(final, data.test.examples, config.eval_batch_size,
                                              final.default_decoding["beam_size"], final.default_decoding["alpha"])
        best_captions = [o["caption"] or "<empty>" for o in outputs]
        default.update(metrics_lib.nltk_corpus_bleu(references, best_captions))
        default["cider_d"] = metrics_lib.cider_d(references, best_captions)[0]
    else:
        default.update({k: v for k, v in scores.items()})
    metrics = {
        "split": data.test.name,
        # False when there is no test split: the val split chose the checkpoint and stopped training.
        "held_out": data.test is not data.val,
        "images": len(data.test.examples),
        "decoding": "greedy",
        "scale": "0-1 (CIDEr-D unbounded, 1.0 = '100' in papers)",
        **scores,
        "default_decoding": default,
        **(extra or {}),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
    }
    runs.write_json(os.path.join(run_dir, runs.METRICS), metrics)
    shutil.rmtree(os.path.join(run_dir, BACKUP), ignore_errors=True)
    if is_multi_worker(strategy):
        share_from_chief(strategy, {"finished": 1.0})  # releases the waiting workers
    return metrics


def format_metrics(metrics):
    """The metrics a finished run prints: greedy nltk BLEU and CIDEr-D, then the decoding default's."""
    if metrics.get("held_out", True):
        title = f"Test metrics ({metrics['split']} split"
    else:
        title = (f"Final metrics on the {metrics['split']} split, not a held-out test split: it also chose the "
                 f"checkpoint and early stopping, so they are optimistic ({metrics['split']} split")
    lines = [f"{title}, {metrics['images']} images, {metrics['decoding']} decoding, scale {metrics['scale']}):"]
    for n in range(1, 5):
        lines.append(f"  BLEU-{n} (nltk corpus_bleu)  {metrics[f'nltk_bleu_{n}']:.4f}")
    if "cider_d" in metrics:
        lines.append(f"  CIDEr-D (pycocoevalcap, caption tokenizer words)  {metrics['cider_d']:.4f}")
    default = metrics.get("default_decoding")
    if default:
        how = (f"chosen on {default['chosen_on']} by CIDEr-D" if not default["chosen_on"].startswith("no search")
               else default["chosen_on"])
        lines.append(f"Decoding default ({how}): {describe_decoding(default['beam_size'], default['alpha'])}")
        if default["beam_size"] > 1:
            lines.append(f"  with it: BLEU-4 (nltk) {default['nltk_bleu_4']:.4f}, CIDEr-D {default['cider_d']:.4f}")
    return "\n".join(lines)

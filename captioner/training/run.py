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
from captioner.data import image_check
from captioner.data import tokenizer as tokenizer_lib
from captioner.evaluation import scoring
from captioner.decoding.settings import GREEDY, Decoding
from captioner.models.captioner import build_captioner
from captioner.training import decoding_search
from captioner.training.callbacks import BACKUP, ProgressLog, RunBackup, truncate_log
from captioner.training.distribute import is_chief, is_multi_worker, share_from_chief


# Where a run's data and cache are, not what it is: a resumed run may find them elsewhere.
PATH_FIELDS = ("data_root", "karpathy_json", "feature_cache_dir")
# What a run writes before its first training step: a folder holding only these has nothing to resume.
STARTING_FILES = (runs.CONFIG, runs.VOCAB, runs.LOCK, "scst.json", "cider_df.npz", "splits.json")


def check_run_dir(run_dir, config):
    """Refuses a finished run folder, or an unfinished one made with another config; says whether to resume.

    Returns True if the folder holds an unfinished run of this config (to resume). A folder of another
    config whose run never finished a training step (a typo in a flag, a run stopped while reading
    its data) is started again with these settings, and the log says so. A run whose data root,
    Karpathy file or cache folder moved resumes with the new paths.
    """
    if runs.is_finished(run_dir):
        raise FileExistsError(f"{run_dir} already holds a finished run; choose another --run-dir")
    config_path = os.path.join(run_dir, runs.CONFIG)
    if not os.path.exists(config_path):
        return False
    started = any(name not in STARTING_FILES for name in os.listdir(run_dir))
    try:
        saved = runs.load_config(run_dir)
    except (ValueError, TypeError) as error:  # includes malformed JSON
        if started:
            raise ValueError(f"{config_path} is not a valid config ({error}); choose another --run-dir") from None
        saved = None
    moved = {k: getattr(config, k) for k in PATH_FIELDS}
    if saved is not None and saved.replace(**moved) == config:
        if saved != config:
            changes = [f"{k} {getattr(saved, k)} -> {v}" for k, v in moved.items() if getattr(saved, k) != v]
            log(f"The run's data or cache moved: {'; '.join(changes)}")
            runs.write_json(config_path, config.to_json())
        return True
    if not started:
        log(f"{run_dir} held a run of other settings that never finished a training step: starting it again "
            "with these settings")
        for name in os.listdir(run_dir):
            if name != runs.LOCK:
                os.remove(os.path.join(run_dir, name))
        return False
    differences = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                   if getattr(config, k) != v and k not in PATH_FIELDS}
    raise ValueError(
        f"{run_dir} holds an unfinished run with another config (saved, requested): {differences}; "
        "rerun with its settings to resume, or choose another --run-dir")


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


def fit_resumably(model, train_data, val_data, steps, config, run_dir, strategy, all_callbacks, verbose, paths=()):
    """`model.fit()` that resumes from the run's backup; returns the seconds spent.

    `all_callbacks` are `callbacks()`'s (their `RunBackup` among them) and any
    extra ones. A run whose backup says it had finished, or had already met
    early stopping's condition, is not fitted again: its last weights are loaded.
    `paths`: the images `fit()` reads, named if one fails to decode in the pipeline. `verbose`: 0 or 2
    print only the epochs' lines, 1 or "auto" also the steps' progress (on stderr, `ProgressLog`).
    """
    backup_dir = os.path.join(run_dir, BACKUP)
    state = RunBackup.read_state(backup_dir)
    if state is not None and is_chief(strategy):
        truncate_log(run_dir, state["epoch"])
    started = time.time()
    if state is not None and (state.get("done") or RunBackup.stopped_early(state, config.patience)):
        log("Training had finished before the interruption; saving and testing")
        if model.optimizer is not None and not model.optimizer.built:  # the backup holds its state too
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(backup_dir, state["weights"]))
    else:
        fixed_steps = strategy is not None or config.steps_per_epoch
        progress = [ProgressLog(config.epochs, steps)] if verbose in (1, True, "auto") else []
        with image_check.naming_undecodable(paths):
            model.fit(train_data, epochs=config.epochs, steps_per_epoch=steps if fixed_steps else None,
                      validation_data=val_data, shuffle=False, callbacks=all_callbacks + progress, verbose=0)
        next(c for c in all_callbacks if isinstance(c, RunBackup)).mark_done()
    return time.time() - started


def finish(config, run_dir, data, captioner, model, vocabulary, strategy, started, train_seconds, extra=None,
           val_cache=None):
    """After `fit()`: best weights, the decoding default, `model.keras`, test metrics; returns the metrics.

    The saved model is rebuilt in float32 outside any strategy, so it loads and
    decodes anywhere. Its decoding default is chosen on validation images
    (`captioner.training.decoding_search`, `config.search_images`; 0 keeps greedy),
    from `val_cache` (the first `config.val_images` validation images' regions)
    where it covers them. The test split is captioned greedily (CIDEr-D and nltk
    BLEU, as every run reports) and, when the default is another setting, with
    it too, in the same pass over the images. `extra` is added to the metrics.
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
        covered = val_cache is not None and config.search_images <= config.val_images
        choice = decoding_search.choose(final, data.val, config.eval_batch_size, config.search_images,
                                        cache=val_cache if covered else None)
        decoding_search.record(run_dir, choice)
    else:
        choice = {"beam_size": 1, "alpha": 0.0, "images": 0, "table": [], "note": "no search (search_images 0)"}
    final.default_decoding = decoding_search.setting(choice)
    final.trained_on = {"dataset": config.dataset, "images": len(data.train.examples)}
    log(f"Decoding default: {final.default_decoding.describe()}")
    runs.save_model(final, os.path.join(run_dir, runs.MODEL))
    chosen = final.default_decoding
    settings = [GREEDY] if chosen == GREEDY else [GREEDY, chosen]
    log(f"Captioning the test split ({' and '.join(s.describe() for s in settings)}) ...")
    outputs = scoring.caption_settings(final, data.test.examples, config.eval_batch_size, settings)
    captions = [o["caption"] for o in outputs[GREEDY]]
    scores = scoring.greedy_figures(data.test, captions)
    predictions = [{"image_id": e.image_id, "caption": c} for e, c in zip(data.test.examples, captions)]
    runs.write_json(os.path.join(run_dir, f"predictions_{data.test.name}.json"), predictions)
    default = {"beam_size": chosen.beam_size, "alpha": chosen.alpha, **chosen.to_json(),
               "chosen_on": (f"{choice['images']} {data.val.name} images"
                             if choice["images"] else "no search (--search-images 0)")}
    default.update(scoring.greedy_figures(data.test, [o["caption"] for o in outputs[settings[-1]]]))
    bad = {split.name: split.bad_images for split in (data.train, data.val, data.test)}
    metrics = {
        "split": data.test.name,
        # False when there is no test split: the val split chose the checkpoint and stopped training.
        "held_out": data.test is not data.val,
        "images": len(data.test.examples),
        "decoding": "greedy",
        "scale": "0-1 (CIDEr-D unbounded, 1.0 = '100' in papers)",
        "checkpoint_metric": f"val_{config.checkpoint_metric} (greedy)",
        **({"bad_images_left_out": bad} if any(bad.values()) else {}),
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


DECODING_FIELDS = {f.name for f in dataclasses.fields(Decoding)}


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
        decoding = Decoding.from_json({k: v for k, v in default.items() if k in DECODING_FIELDS})
        lines.append(f"Decoding default ({how}): {decoding.describe()}")
        if decoding != GREEDY:
            lines.append(f"  with it: BLEU-4 (nltk) {default['nltk_bleu_4']:.4f}, CIDEr-D {default['cider_d']:.4f}")
    return "\n".join(lines)

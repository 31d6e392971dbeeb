"""`tf.distribute` for training: strategies by name, which process is the chief, sharing its figures."""

import os

import tensorflow as tf

from captioner.config import STRATEGIES


def make_strategy(name):
    """A `tf.distribute` strategy by name, or None for the default (one device).

    "mirrored": all local GPUs (synchronous data parallelism); "multi-worker":
    `MultiWorkerMirroredStrategy` over the workers in `TF_CONFIG`; "tpu": the
    TPU found by `TPUClusterResolver`. Create it before any other TensorFlow work.
    """
    if name == "none":
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--distribute multi-worker reads the cluster from the TF_CONFIG environment "
                             "variable, which is not set (see the README's distributed training section)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown distribution {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_multi_worker(strategy):
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` over a cluster of workers."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        len(strategy.cluster_resolver.cluster_spec().as_dict()) > 0


def is_chief(strategy):
    """Whether this process writes the run folder: the `chief` task, or `worker` 0 when there is none."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def share_from_chief(strategy, values):
    """The chief's `values` (dict of floats) on every worker, through one all-reduce.

    Only the global replica 0 contributes; `MultiWorkerMirroredStrategy` puts it
    on the chief (or on worker 0 when there is no chief). Every worker must call this.
    """
    keys = sorted(values)
    local = tf.constant([float(values[k]) for k in keys], tf.float32)

    @tf.function
    def reduce():
        def replica_fn():
            first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
            return tf.where(first, local, tf.zeros_like(local))
        return strategy.reduce("SUM", strategy.run(replica_fn), axis=None)

    return dict(zip(keys, (float(v) for v in reduce().numpy())))

"""Choosing the tf.distribute strategy.

TF_CONFIG set -> MultiWorkerMirroredStrategy (it must exist before any other TF op, so the
binary creates it first); GPUs visible -> MirroredStrategy over all of them; otherwise the
default (single-device) strategy. ``"mirrored_cpu:N"`` mirrors over N logical CPUs (tests).
"""
import json
import os

import tensorflow as tf


def make_strategy(kind="auto"):
    if kind == "auto":
        if os.environ.get("TF_CONFIG"):
            cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
            if len(cluster.get("worker", [])) > 1 or cluster.get("chief"):
                return tf.distribute.MultiWorkerMirroredStrategy()
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind.startswith("mirrored_cpu:"):
        n = int(kind.split(":")[1])
        _split_cpu(n)
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) < n:
            raise ValueError(
                f"strategy {kind!r} needs {n} logical CPUs but {len(cpus)} are configured; "
                "split the CPU with tf.config.set_logical_device_configuration first"
            )
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
    raise ValueError(
        f"unknown strategy {kind!r}; use 'auto', 'default', 'mirrored', 'multi_worker' "
        "or 'mirrored_cpu:N'"
    )


def _split_cpu(n):
    """Splits the CPU into n logical devices, which TensorFlow allows only before its
    runtime starts (a binary's first strategy); afterwards the existing split stays."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # already initialised (tests configure two at start-up)
        pass

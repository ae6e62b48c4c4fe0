"""The GECO training loop: a per-replica step, a tf.function inner loop, a Python outer loop.

replica step:  forward -> loss terms -> loss = (Σ err + β Σ (kl_m + kl_l)) / global batch
               -> gradients -> Adam -> GECO update with the error averaged over replicas
inner loop:    ``steps_per_loop`` replica steps inside one tf.function (tf.range)
outer loop:    divergence guard, progress line, summaries, validation, checkpoints

All state (model, optimizer, GECO, step counter, input iterator) lives in one
tf.train.Checkpoint; every run restores the latest checkpoint in model_dir first.
"""
import os
import shutil
import time
from typing import Any, NamedTuple

import gin
import keras
import numpy as np
import tensorflow as tf

from genesis_tf import data as data_lib
from genesis_tf.geco import GECO
from genesis_tf.training import precision as precision_lib
from genesis_tf.training import summaries
from genesis_tf.training.progress import Progress
from genesis_tf.training.strategy import make_strategy

ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


class TrainingDivergedError(RuntimeError):
    """Non-finite loss or an ELBO beyond the limit; the last good checkpoint is kept."""


class CheckpointMismatchError(RuntimeError):
    """model_dir holds a checkpoint of a different model or configuration."""


class TrainResult(NamedTuple):
    model: Any
    step: int
    metrics: dict
    model_dir: str
    checkpoint: str


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def _crossed(step, n, every):
    return bool(every) and step // every != (step - n) // every


@gin.configurable(denylist=["model_dir"])
def train(
    model_dir,
    model=gin.REQUIRED,
    dataset="synthetic",
    image_size=64,
    batch_size=32,
    num_steps=500_000,
    steps_per_loop=10,
    learning_rate=1e-4,
    adam_epsilon=1e-8,
    checkpoint_every=1000,
    keep_checkpoints=3,
    summary_every=100,
    image_summary_every=1000,
    validation_every=0,
    validation_batches=10,
    data_dir=None,
    seed=None,
    strategy="auto",
    max_elbo=1e8,
    geco_alpha=0.99,
    geco_speedup=10.0,
    deterministic_posterior=False,
    max_minutes=None,
    log_every_seconds=10.0,
    precision="float32",
):
    """Trains `model` (a model class or factory, e.g. gin's @Genesis) with GECO.

    Args:
      model_dir: checkpoints, TensorBoard logs and the operative gin config go here.
      model: callable(image_size=...) returning a GENESIS-style keras.Model.
      dataset: a genesis_tf.data dataset name ("multi_dsprites/offline_colored", ...).
      batch_size: the global batch size (split over replicas).
      num_steps: total optimisation steps (the paper: 500,000).
      steps_per_loop: steps run inside one tf.function call between Python-side work.
      adam_epsilon: PyTorch's Adam default (Keras' is 1e-7).
      strategy: "auto" (TF_CONFIG -> multi-worker, GPUs -> mirrored, else default), a
        name understood by make_strategy, or a tf.distribute.Strategy.
      max_elbo: the run stops as diverged when the negative ELBO exceeds this.
      deterministic_posterior: use posterior means instead of samples (an autoencoder):
        only for exactness tests.
      max_minutes: stop (with a checkpoint) after this much wall-clock time.
      precision: "float32" (the default and the reported baseline), "mixed_bfloat16"
        (bfloat16 compute, float32 variables: for CPUs with AVX512-BF16 or AMX) or
        "mixed_float16" (for GPUs; adds dynamic loss scaling). Probabilities, losses and
        GECO stay float32 in every case. genesis_tf.training.precision warns when the
        hardware would emulate the low-precision kernels.
    Returns:
      TrainResult(model, step, metrics, model_dir, checkpoint path).
    """
    precision_lib.check_hardware(precision)  # also rejects unknown names
    if isinstance(strategy, str):
        strategy = make_strategy(strategy)
    if steps_per_loop < 1 or num_steps < 0 or batch_size < 1:
        raise ValueError("steps_per_loop and batch_size must be >= 1, num_steps >= 0")
    if batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the {strategy.num_replicas_in_sync} "
            "replicas"
        )
    chief = _is_chief(strategy)
    # Non-chief workers must take part in saving, but into a scratch directory.
    save_dir = model_dir if chief else os.path.join(
        model_dir, f"worker_tmp_{strategy.cluster_resolver.task_id}")
    tf.io.gfile.makedirs(save_dir)

    with strategy.scope():
        net = precision_lib.with_policy(precision, lambda: model(image_size=image_size))
        net.build_for_images()
        optimizer = keras.optimizers.Adam(learning_rate, epsilon=adam_epsilon)
        # float16 gradients underflow without dynamic loss scaling.
        loss_scaling = precision == "mixed_float16"
        if loss_scaling:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(net.trainable_variables)  # slots must exist before strategy.run
        geco = GECO.for_image(image_size, image_size, alpha=geco_alpha, speedup=geco_speedup)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                           aggregation=ONLY_FIRST)

    def make_iterator(skip_batches=0):
        def dataset_fn(input_context):
            ds = data_lib.train_dataset(dataset, image_size, batch_size, data_dir=data_dir,
                                        seed=seed, input_context=input_context)
            return ds.skip(skip_batches) if skip_batches else ds

        return iter(strategy.distribute_datasets_from_function(dataset_fn))

    iterator = make_iterator()
    # The input position is checkpointed where tf.distribute can (one device); across
    # several devices the iterator is not trackable, so a resumed run skips the batches
    # it had consumed instead (same data when train.seed is set).
    trackable_input = isinstance(iterator, tf.__internal__.tracking.Trackable)
    state = dict(model=net, optimizer=optimizer, geco=geco, step=step)
    if trackable_input:
        state["iterator"] = iterator
    checkpoint = tf.train.Checkpoint(**state)
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=keep_checkpoints)
    restored = _restore(checkpoint, model_dir)
    if not trackable_input and int(step.numpy()):
        iterator = make_iterator(int(step.numpy()))

    if chief:
        with tf.io.gfile.GFile(os.path.join(model_dir, "operative_config.gin"), "w") as f:
            f.write(gin.operative_config_str())

    variables = net.trainable_variables

    def noise_seed():
        """With train.seed set, each (step, replica) draws reproducible posterior noise,
        so a resumed run continues exactly as an uninterrupted one."""
        if seed is None:
            return None
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        mixed = (tf.cast(seed, tf.int64) * 1_000_003 + step.read_value() * 64
                 + tf.cast(replica, tf.int64))
        return tf.cast(mixed % (2**31 - 1), tf.int32)

    def replica_step(batch):
        images = batch["image"]
        with tf.GradientTape() as tape:
            out = net(images, training=True, deterministic=deterministic_posterior,
                      seed=noise_seed())
            terms = net.loss_terms(images, out)
            err = tf.reduce_sum(terms["err"])
            kl_m = tf.reduce_sum(terms["kl_m"])
            kl_l = tf.reduce_sum(terms["kl_l"])
            # Divided by the global batch: the replicas' gradients are summed.
            loss = geco.loss(err, kl_m + kl_l) / batch_size
            if loss_scaling:
                loss = optimizer.scale_loss(loss)
        # With loss scaling, apply_gradients unscales (and skips non-finite steps).
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        context = tf.distribute.get_replica_context()
        means = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                   tf.stack([err, kl_m, kl_l])) / batch_size
        geco.update(means[0])  # the same value on every replica, so β stays identical
        return means

    @tf.function
    def train_loop(n):
        means = tf.zeros([3])
        for _ in tf.range(n):
            per_replica = strategy.run(replica_step, args=(next(iterator),))
            means = strategy.experimental_local_results(per_replica)[0]
            step.assign_add(1)
        return means

    writer = tf.summary.create_file_writer(os.path.join(model_dir, "train")) if chief \
        else tf.summary.create_noop_writer()
    val_writer = tf.summary.create_file_writer(os.path.join(model_dir, "val")) if chief \
        else tf.summary.create_noop_writer()
    preview = None
    progress = Progress(num_steps)
    current = int(step.numpy())
    progress.start(current)
    if current:
        print(f"Resumed from {restored} at step {current}.", flush=True)
    started, last_log, metrics = time.monotonic(), 0.0, {}
    last_time, last_step = started, current

    while current < num_steps:
        n = min(steps_per_loop, num_steps - current)
        means = train_loop(tf.constant(n, tf.int64)).numpy()
        current = int(step.numpy())
        now = time.monotonic()
        metrics = {
            "err": float(means[0]),
            "kl_m": float(means[1]),
            "kl_l": float(means[2]),
            "elbo": float(means.sum()),
            "beta": float(geco.beta.numpy()),
            "err_ema": float(geco.err_ema.numpy()),
            "steps_per_sec": (current - last_step) / max(now - last_time, 1e-9),
        }
        last_time, last_step = now, current
        if not np.all(np.isfinite(means)) or metrics["elbo"] > max_elbo:
            raise TrainingDivergedError(
                f"training diverged at step {current}: elbo={metrics['elbo']:.4g}, "
                f"err={metrics['err']:.4g}, kl_m={metrics['kl_m']:.4g}, "
                f"kl_l={metrics['kl_l']:.4g} (limit {max_elbo:.3g}). The last good "
                f"checkpoint, {manager.latest_checkpoint}, is kept; lower the learning "
                "rate or check the data, then rerun to resume from it."
            )
        out_of_time = max_minutes is not None and now - started > 60.0 * max_minutes
        done = current >= num_steps or out_of_time
        if _crossed(current, n, summary_every) or done:
            summaries.write_scalars(writer, current, metrics, "train")
        if now - last_log >= log_every_seconds or done:
            progress.report(current, metrics)
            last_log = now
        if chief and image_summary_every and (_crossed(current, n, image_summary_every) or done):
            if preview is None:
                preview = next(iter(data_lib.train_dataset(
                    dataset, image_size, 8, data_dir=data_dir, seed=0, shuffle=False)))["image"]
            summaries.write_images(writer, current, preview.numpy(),
                                   net(preview, training=False), net.sample(8, seed=0))
        if _crossed(current, n, validation_every):
            val = evaluate(net, dataset, image_size, batch_size, data_dir, validation_batches)
            summaries.write_scalars(val_writer, current, val, "val")
            print(f"validation at step {current}: " +
                  ", ".join(f"{k} {v:.2f}" for k, v in val.items()), flush=True)
        if _crossed(current, n, checkpoint_every) or done:
            manager.save(checkpoint_number=current)
        if out_of_time:
            print(f"Stopping after {max_minutes} minutes at step {current}.", flush=True)
            break

    writer.flush()
    if not chief:
        shutil.rmtree(save_dir, ignore_errors=True)
    return TrainResult(net, current, metrics, model_dir, manager.latest_checkpoint)


def _restore(checkpoint, model_dir):
    """Restores the chief's latest checkpoint (every worker reads the same one)."""
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:
        return None
    try:
        checkpoint.restore(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
        raise CheckpointMismatchError(
            f"the checkpoint {latest} in --model_dir={model_dir} does not fit the "
            f"configured model ({str(error).splitlines()[0][:300]}). Use a new --model_dir, "
            "or the gin configuration that model_dir/operative_config.gin records."
        ) from error
    return latest


def evaluate(net, dataset, image_size, batch_size, data_dir=None, num_batches=10,
             split="validation"):
    """Mean err, kl_m, kl_l and elbo over `num_batches` evaluation batches."""
    try:
        ds = data_lib.eval_dataset(dataset, image_size, batch_size, split=split,
                                   data_dir=data_dir)
    except ValueError:  # no such split: fall back to test
        ds = data_lib.eval_dataset(dataset, image_size, batch_size, split="test",
                                   data_dir=data_dir)

    @tf.function
    def terms_of(images):
        out = net(images, training=False)
        terms = net.loss_terms(images, out)
        return tf.stack([tf.reduce_sum(terms[k]) for k in ("err", "kl_m", "kl_l")])

    totals, count = np.zeros(3), 0
    for batch in ds.take(num_batches):
        totals += terms_of(batch["image"]).numpy()
        count += int(batch["image"].shape[0])
    means = totals / max(count, 1)
    return {"err": means[0], "kl_m": means[1], "kl_l": means[2], "elbo": means.sum()}

"""The GECO training loop: the replica step, a tf.function inner loop, periodic actions.

replica step:  genesis_tf/training/step.py (forward, loss terms, GECO, optimizer)
inner loop:    ``steps_per_loop`` replica steps inside one tf.function (tf.range); each
               step's loss terms go into a keras.metrics.Mean per term
outer loop:    after each inner loop, the periodic actions: divergence guard, progress
               line, summaries (the means since the last summary), preview images,
               validation, checkpoint; SIGINT/SIGTERM save a checkpoint and stop

All state (model, optimizer, GECO, step counter) lives in one tf.train.Checkpoint; every
run restores the latest checkpoint in model_dir first. The input position is not
checkpointed (tf.data's iterator state holds the whole shuffle buffer, 80–190 MB): with
train.seed set the data order is a function of the seed, and a resumed run skips the
examples it had consumed; without a seed it draws a fresh shuffle.
"""
import os
import shutil
import signal
import threading
import time
from typing import Any, NamedTuple

import gin
import keras
import numpy as np
import tensorflow as tf

from genesis_tf import data as data_lib
from genesis_tf import runs
from genesis_tf.errors import UserError
from genesis_tf.geco import GECO, GOAL_PER_PIXEL
from genesis_tf.models import config_of
from genesis_tf.models.base import KL_PREFIX, elbo, summary_name
from genesis_tf.progress import Progress
from genesis_tf.runs import CheckpointMismatchError
from genesis_tf.training import checkpoints, summaries
from genesis_tf.training import precision as precision_lib
from genesis_tf.training.optimizers import make_optimizer
from genesis_tf.training.step import make_train_step
from genesis_tf.training.strategy import make_strategy

ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA

__all__ = ["CheckpointMismatchError", "ConfigurationError", "TrainResult", "TrainingDivergedError",
           "TrainingInterrupted", "evaluate", "train"]


class ConfigurationError(UserError, ValueError):
    """The gin configuration asks for something that cannot be built."""


class TrainingDivergedError(UserError, RuntimeError):
    """Non-finite loss or an ELBO beyond the limit; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(Exception):  # noqa: N818 (not an error: the user asked for it)
    """SIGINT or SIGTERM arrived; a checkpoint was saved. ``exit_code`` is 128 + signal."""

    def __init__(self, signal_number, step, checkpoint):
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        self.exit_code = 128 + signal_number
        name = signal.Signals(signal_number).name
        super().__init__(f"{name}: stopped at step {step}, checkpoint {checkpoint}; "
                         "rerun the same command to resume")


class TrainResult(NamedTuple):
    model: Any
    step: int
    metrics: dict
    model_dir: str
    checkpoint: str


class Periodic(NamedTuple):
    """An outer-loop action run when the step crosses a multiple of `every` (0: never)
    and, with at_end, after the last step."""

    every: int
    action: Any  # callable(step)
    at_end: bool = True

    def due(self, step, steps_run, final):
        crossed = bool(self.every) and step // self.every != (step - steps_run) // self.every
        return crossed or (final and self.at_end)


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag the outer loop checks between inner loops (so the
    checkpoint holds a finished step). A second signal stops at once."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signal_number, frame):
        if self.received is not None:  # second signal: give up waiting
            signal.signal(signal_number, signal.SIG_DFL)
            os.kill(os.getpid(), signal_number)
            return
        self.received = signal_number
        print(f"\n{signal.Signals(signal_number).name} received: saving a checkpoint after "
              "the current steps (send it again to stop at once)", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def _check_model_dir(model_dir):
    if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
        raise ConfigurationError(
            f"--model_dir={model_dir} is a file; give a directory (new or of an earlier run)")


def _checked_kl_weights(kl_weights, term_names, model):
    """{kl term: float} naming exactly the model's KL terms, or ConfigurationError."""
    kls = sorted(name for name in term_names if name.startswith(KL_PREFIX))
    if not isinstance(kl_weights, dict) or sorted(kl_weights) != kls:
        raise ConfigurationError(
            f"train.kl_weights must give one weight for each KL term of "
            f"{type(model).__name__}, {kls}, e.g. train.kl_weights = "
            f"{ {name: 0.5 for name in kls} }; got {kl_weights!r}")
    try:
        return {name: float(weight) for name, weight in kl_weights.items()}
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"train.kl_weights must map to numbers: {error}") from None


@gin.configurable(denylist=["model_dir"])
def train(
    model_dir,
    model=gin.REQUIRED,
    dataset="synthetic",
    image_size=64,
    batch_size=32,
    num_steps=500_000,
    steps_per_loop=10,
    optimizer="torch_adam",
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
    geco_goal_per_pixel=GOAL_PER_PIXEL,
    geco_step_size_scale=1.0,
    geco_beta_init=1.0,
    kl_weights=None,
    warm_start=None,
    deterministic_posterior=False,
    max_minutes=None,
    log_every_seconds=10.0,
    precision="float32",
):
    """Trains `model` (a model class or factory, e.g. gin's @Genesis) with GECO.

    Args:
      model_dir: checkpoints, TensorBoard logs and the run's configuration go here.
      model: callable(image_size=...) returning a SceneModel (genesis_tf/models/base.py).
      dataset: a genesis_tf.data dataset name ("multi_dsprites/offline_colored", ...).
      batch_size: the global batch size (split over replicas).
      num_steps: total optimisation steps (the paper: 500,000).
      steps_per_loop: steps run inside one tf.function call between Python-side work.
      optimizer: "torch_adam" (PyTorch's Adam update, as the reference) or "keras_adam".
      adam_epsilon: PyTorch's Adam default.
      strategy: "auto" (TF_CONFIG -> multi-worker, GPUs -> mirrored, else default), a
        name understood by make_strategy, or a tf.distribute.Strategy.
      geco_goal_per_pixel, geco_step_size_scale, geco_beta_init: GECO's reconstruction
        goal in nats per pixel and channel (the reference's 0.5655), its step size as a
        multiple of the reference's 1e-5·64²/(H·W), and the initial β (1). Every shipped
        experiment keeps the reference's values.
      max_elbo: the run stops as diverged when the negative ELBO exceeds this.
      kl_weights: None (GECO on err, its β on the sum of the KL terms: the GENESIS
        paper's setting) or fixed weights for every KL term of the model, e.g. the MONet
        paper's {'kl/z': 0.5, 'kl/mask': 0.5}: loss = err + Σ w·kl, no GECO.
      warm_start: a weights file (genesis_tf.training.warm_start) to start from when
        model_dir has no checkpoint: its weights, step and GECO state, a fresh optimizer.
      optimizer: see above; "torch_rmsprop" is PyTorch's RMSprop (the MONet paper's).
      deterministic_posterior: use posterior means instead of samples (an autoencoder):
        only for exactness tests.
      max_minutes: stop (with a checkpoint) after this much wall-clock time.
      precision: "float32" (the default and the reported baseline), "mixed_bfloat16"
        (bfloat16 compute, float32 variables: for CPUs with AVX512-BF16 or AMX) or
        "mixed_float16" (for GPUs; adds dynamic loss scaling). Probabilities, losses and
        GECO stay float32 in every case. genesis_tf.training.precision measures a
        bfloat16 conv against float32 first and warns when bfloat16 does not pay here.
    Returns:
      TrainResult(model, step, metrics, model_dir, checkpoint path).
    Raises:
      TrainingInterrupted after SIGINT/SIGTERM (a checkpoint was saved first).
    """
    precision_lib.check_hardware(precision)  # also rejects unknown names
    if steps_per_loop < 1 or num_steps < 0 or batch_size < 1:
        raise ValueError("steps_per_loop and batch_size must be >= 1, num_steps >= 0")
    _check_model_dir(model_dir)
    data_lib.check_available(dataset, data_dir)  # before anything is written
    if isinstance(strategy, str):
        strategy = make_strategy(strategy)
    if batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the {strategy.num_replicas_in_sync} "
            "replicas"
        )
    chief = _is_chief(strategy)
    # Non-chief workers must take part in saving, but into a scratch directory.
    save_dir = model_dir if chief else os.path.join(
        model_dir, f"worker_tmp_{strategy.cluster_resolver.task_id}")

    # -- state ----------------------------------------------------------------------------
    with strategy.scope():
        try:
            net = precision_lib.with_policy(precision, lambda: model(image_size=image_size))
        except (TypeError, ValueError) as error:
            if "argument" not in str(error):
                raise
            raise ConfigurationError(
                f"the model cannot be built: {str(error).splitlines()[0]} (check its "
                "bindings in the gin files, e.g. Genesis.num_slots)") from error
        net.build_for_images()
        description = config_of(net)
        checkpoints.check_same_model(model_dir, description)
        opt = make_optimizer(optimizer, learning_rate, epsilon=adam_epsilon)
        loss_scaling = precision == "mixed_float16"  # float16 gradients underflow
        if loss_scaling:
            opt = keras.optimizers.LossScaleOptimizer(opt)
        opt.build(net.trainable_variables)  # slots must exist before strategy.run
        geco = GECO.for_image(image_size, image_size, alpha=geco_alpha, speedup=geco_speedup,
                              goal_per_pixel=geco_goal_per_pixel,
                              step_size_scale=geco_step_size_scale,
                              beta_init=geco_beta_init)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                           aggregation=ONLY_FIRST)
        term_names = list(net.loss_terms(
            tf.zeros([1, image_size, image_size, 3]),
            net(tf.zeros([1, image_size, image_size, 3]), training=False)))
        term_means = {name: keras.metrics.Mean(name=summary_name(name))
                      for name in term_names}
        if kl_weights is not None:
            kl_weights = _checked_kl_weights(kl_weights, term_names, net)

    tf.io.gfile.makedirs(save_dir)
    checkpoint = tf.train.Checkpoint(model=net, optimizer=opt, geco=geco, step=step)
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=keep_checkpoints)
    restored = tf.train.latest_checkpoint(model_dir)
    warm = None
    if restored:
        checkpoints.restore_into(checkpoint, restored, net, model_dir)
    elif warm_start:
        # Imported here: `python -m genesis_tf.training.warm_start` must not find its own
        # module already imported by the package (runpy warns about that).
        from genesis_tf.training import warm_start as warm_start_lib

        warm = warm_start_lib.load_into(net, warm_start)
        step.assign(warm["step"])
        geco.beta.assign(warm["beta"])
        geco.err_ema.assign(warm["err_ema"])
        geco.initialised.assign(True)
    start_step = int(step.numpy())
    if chief:
        runs.write_description(model_dir, description)
        runs.write_run_info(model_dir, dataset, data_dir, image_size)
        changes = checkpoints.record_operative_config(
            model_dir, gin.operative_config_str(), start_step)
        if changes and start_step:
            print(f"Resuming with changed settings (recorded in {model_dir}/"
                  f"{checkpoints.HISTORY_DIR}): " + "; ".join(changes), flush=True)

    # -- input ----------------------------------------------------------------------------
    data_start = 0 if warm else start_step  # a warm start reads the data from its start

    def dataset_fn(input_context):
        skip = data_start * batch_size // input_context.num_input_pipelines
        return data_lib.train_dataset(dataset, image_size, batch_size, data_dir=data_dir,
                                      seed=seed, input_context=input_context,
                                      skip_examples=skip if seed is not None else 0)

    if data_start and seed is not None:
        print(f"Skipping the {data_start * batch_size:,} examples consumed before step "
              f"{data_start} (train.seed is set, so the data order continues exactly)…",
              flush=True)
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))

    # -- the step and the inner loop --------------------------------------------------------
    def noise_seed():
        """With train.seed set, each (step, replica) draws reproducible posterior noise,
        so a resumed run continues exactly as an uninterrupted one."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        mixed = (tf.cast(seed, tf.int64) * 1_000_003 + step.read_value() * 64
                 + tf.cast(replica, tf.int64))
        return tf.cast(mixed % (2**31 - 1), tf.int32)

    replica_step = make_train_step(
        net, opt, geco, batch_size, loss_scaling=loss_scaling,
        deterministic=deterministic_posterior,
        seed_fn=noise_seed if seed is not None else None, kl_weights=kl_weights)

    @tf.function
    def train_loop(n):
        for _ in tf.range(n):
            per_replica = strategy.run(replica_step, args=(next(iterator)["image"],))
            means = strategy.experimental_local_results(per_replica)[0]  # all-reduced
            for name, value in means.items():
                term_means[name].update_state(value)
            step.assign_add(1)

    # -- periodic actions -------------------------------------------------------------------
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "train")) if chief \
        else tf.summary.create_noop_writer()
    val_writer = tf.summary.create_file_writer(os.path.join(model_dir, "val")) if chief \
        else tf.summary.create_noop_writer()
    progress = Progress(num_steps)
    preview = []
    latest = {}

    def current_metrics():
        values = {name: float(metric.result()) for name, metric in term_means.items()}
        metrics = {summary_name(name): value for name, value in values.items()}
        metrics["elbo"] = float(elbo(values))
        if kl_weights is None:  # with fixed weights GECO's state is not used
            metrics["beta"] = float(geco.beta.numpy())
            metrics["err_ema"] = float(geco.err_ema.numpy())
        return metrics

    def write_summaries(current):
        metrics = dict(latest, steps_per_sec=progress.rate)
        summaries.write_scalars(writer, current, metrics, "train")
        for metric in term_means.values():  # the next summary averages the steps after
            metric.reset_state()

    def write_images(current):
        if not preview:
            preview.append(next(iter(data_lib.train_dataset(
                dataset, image_size, 8, data_dir=data_dir, seed=0, shuffle=False)))["image"])
        summaries.write_images(writer, current, preview[0].numpy(),
                               net(preview[0], training=False), net.sample(8, seed=0))

    def validate(current):
        val = evaluate(net, dataset, image_size, batch_size, data_dir, validation_batches)
        summaries.write_scalars(val_writer, current, val, "val")
        print(f"validation at step {current}: " +
              ", ".join(f"{k} {v:.2f}" for k, v in val.items()), flush=True)

    actions = [Periodic(summary_every, write_summaries)]
    if chief:
        actions.append(Periodic(image_summary_every, write_images,
                                at_end=bool(image_summary_every)))
    actions += [
        Periodic(validation_every, validate, at_end=False),
        Periodic(checkpoint_every, lambda current: manager.save(checkpoint_number=current)),
    ]

    # -- the outer loop ---------------------------------------------------------------------
    if restored:
        print(f"Resumed from {restored} at step {start_step}.", flush=True)
    elif warm:
        print(f"Starting from the weights in {warm_start} (step {start_step}, GECO beta "
              f"{warm['beta']:.3g}); the optimizer starts afresh.", flush=True)
    current, started, last_log = start_step, time.monotonic(), 0.0
    if max_minutes is not None:
        progress.deadline = started + 60.0 * max_minutes
    first_call = True
    with _StopSignals() as stop:
        while current < num_steps:
            n = min(steps_per_loop, num_steps - current)
            if first_call:
                print("Compiling the training step (the first call traces the graph)…",
                      flush=True)
                traced = time.monotonic()
            try:
                train_loop(tf.constant(n, tf.int64))
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
                data_lib.raise_if_corrupt(error, dataset, data_dir)
                raise
            current = int(step.numpy())
            now = time.monotonic()
            if first_call:
                print(f"Compiled and ran {n} step(s) in {now - traced:.1f} s.", flush=True)
                progress.start(current)  # the ETA leaves tracing out
                first_call = False
            latest = current_metrics()
            if not np.all(np.isfinite(list(latest.values()))) or latest["elbo"] > max_elbo:
                raise TrainingDivergedError(
                    f"training diverged at step {current}: " +
                    ", ".join(f"{k}={v:.4g}" for k, v in latest.items()) +
                    f" (limit elbo {max_elbo:.3g}). The last good checkpoint, "
                    f"{manager.latest_checkpoint}, is kept; lower the learning rate or check "
                    "the data, then rerun to resume from it."
                )
            out_of_time = max_minutes is not None and now - started > 60.0 * max_minutes
            interrupted = stop.received  # read once: a signal arriving later waits a loop
            final = current >= num_steps or out_of_time or interrupted is not None
            progress.tick(current)
            if now - last_log >= log_every_seconds or final:
                progress.report(current, latest)
                last_log = now
            for periodic in actions:
                if periodic.due(current, n, final):
                    periodic.action(current)
            if interrupted is not None:
                writer.flush()
                raise TrainingInterrupted(interrupted, current, manager.latest_checkpoint)
            if out_of_time:
                print(f"Stopping after {max_minutes} minutes at step {current}.", flush=True)
                break

    writer.flush()
    if not chief:
        shutil.rmtree(save_dir, ignore_errors=True)
    return TrainResult(net, current, latest, model_dir, manager.latest_checkpoint)


def evaluate(net, dataset, image_size, batch_size, data_dir=None, num_batches=10,
             split="validation"):
    """Mean of every loss term and the negative ELBO over `num_batches` evaluation
    batches: {'err', 'kl_m', ..., 'elbo'} (summary names)."""
    try:
        ds = data_lib.eval_dataset(dataset, image_size, batch_size, split=split,
                                   data_dir=data_dir, max_examples=num_batches * batch_size)
    except ValueError:  # no such split: fall back to test
        ds = data_lib.eval_dataset(dataset, image_size, batch_size, split="test",
                                   data_dir=data_dir, max_examples=num_batches * batch_size)

    @tf.function
    def sums_of(images):
        out = net(images, training=False)
        return {k: tf.reduce_sum(v) for k, v in net.loss_terms(images, out).items()}

    totals, count = {}, 0
    for batch in ds:
        for key, value in sums_of(batch["image"]).items():
            totals[key] = totals.get(key, 0.0) + float(value)
        count += int(batch["image"].shape[0])
    means = {key: value / max(count, 1) for key, value in totals.items()}
    result = {summary_name(key): value for key, value in means.items()}
    result["elbo"] = float(elbo(means))  # err + Σ kl/*, as the training summaries
    return result

"""The GECO training loop: a tf.function inner loop and a short outer loop of actions.

state:       genesis_tf/training/state.py (model, optimizer, GECO, step, term means,
             checkpoint and its CheckpointManager), built under the strategy's scope
replica step: genesis_tf/training/step.py (forward, loss terms, GECO, optimizer)
inner loop:  ``steps_per_loop`` replica steps inside one tf.function (tf.range); each
             step's loss terms go into a keras.metrics.Mean per term
outer loop:  after each inner loop, the actions of genesis_tf/training/actions.py:
             divergence guard, progress line, summaries (the means since the last
             summary), preview images, validation, checkpoint; a time budget and
             SIGINT/SIGTERM end the run with a checkpoint

Every run restores the latest checkpoint in model_dir first (else starts from
train.warm_start's weights, if given). The input position is not checkpointed (tf.data's
iterator state holds the whole shuffle buffer, 80–190 MB): with train.seed set the data
order is a function of the seed, and a resumed run skips the examples it had consumed;
without a seed it draws a fresh shuffle.
"""
import os
import time
import types
from typing import Any, NamedTuple

import gin
import keras
import tensorflow as tf

from genesis_tf import data as data_lib
from genesis_tf import run_lock, run_safety, runs
from genesis_tf.metrics import elbo as elbo_metrics
from genesis_tf.models import config_of
from genesis_tf.models.base import KL_PREFIX
from genesis_tf.progress import Progress
from genesis_tf.runs import CheckpointMismatchError
from genesis_tf.training import actions as actions_lib
from genesis_tf.training import checkpoints
from genesis_tf.training import config as config_lib
from genesis_tf.training import precision as precision_lib
from genesis_tf.training.actions import TrainingDivergedError, TrainingInterrupted
from genesis_tf.training.config import ConfigurationError
from genesis_tf.training.state import TrainState
from genesis_tf.training.step import make_train_step
from genesis_tf.training.strategy import make_strategy

__all__ = ["CheckpointMismatchError", "ConfigurationError", "TrainResult", "TrainingDivergedError",
           "TrainingInterrupted", "train"]


class TrainResult(NamedTuple):
    model: Any
    step: int
    metrics: dict
    model_dir: str
    checkpoint: str


@gin.configurable(denylist=["model_dir", "force"])
def train(model_dir, model=gin.REQUIRED, dataset="synthetic", image_size=64, batch_size=32,
          num_steps=500_000, steps_per_loop=10, checkpoint_every=1000, keep_checkpoints=3,
          summary_every=100, image_summary_every=1000, validation_every=0,
          validation_batches=10, data_dir=None, seed=None, strategy="auto", max_elbo=1e8,
          kl_weights=None, warm_start=None, deterministic_posterior=False, max_minutes=None,
          log_every_seconds=10.0, precision="float32", restore_checkpoint=None, force=False):
    """Trains `model` (a model class or factory, e.g. gin's @Genesis) with GECO.

    The optimizer (make_optimizer.*), GECO (GECO.*) and the input pipeline's own knobs
    (train_dataset.*) are configured in gin under their own names.

    Args:
      model_dir: checkpoints, TensorBoard logs and the run's configuration go here.
      model: callable(image_size=...) returning a SceneModel (genesis_tf/models/base.py).
      dataset, data_dir: a genesis_tf.data dataset name ("multi_dsprites/colored", ...)
        and its TFDS folder; image_size: the side of the square images.
      batch_size: the global batch size (split over replicas).
      num_steps: total optimisation steps (the paper: 500,000).
      steps_per_loop: steps run inside one tf.function call between the actions.
      checkpoint_every, keep_checkpoints: steps between checkpoints (0: at the end only)
        and how many to keep; summary_every, image_summary_every, validation_every:
        steps between scalar summaries, preview images and validations (0: never;
        validation_batches batches each); log_every_seconds: between console lines.
      seed: None (a fresh shuffle and noise) or the seed of the initial weights, the data
        order and the posterior noise, so two runs start alike and a resumed run continues
        exactly as an uninterrupted one.
      strategy: "auto" (TF_CONFIG -> multi-worker, GPUs -> mirrored, else default), a
        name understood by make_strategy, or a tf.distribute.Strategy.
      max_elbo: the run stops as diverged when the negative ELBO exceeds this.
      kl_weights: None (GECO on err, its β on the sum of the KL terms: the GENESIS
        paper's setting) or fixed weights for every KL term of the model, e.g. the MONet
        paper's {'kl/z': 0.5, 'kl/mask': 0.5}: loss = err + Σ w·kl, no GECO.
      warm_start: a weights file (genesis_tf.training.warm_start) to start from when
        model_dir has no checkpoint: its weights, step and GECO state, a fresh optimizer.
      deterministic_posterior: posterior means instead of samples (exactness tests only).
      max_minutes: stop (with a checkpoint) after this much wall-clock time.
      precision: "float32" (the baseline), "mixed_bfloat16" (CPUs with AVX512-BF16 or
        AMX) or "mixed_float16" (GPUs; dynamic loss scaling). Probabilities, losses and
        GECO stay float32 (genesis_tf.training.precision).
      restore_checkpoint: resume from this checkpoint of the run instead of the newest
        readable one (train --checkpoint).
      force: take over the run directory's lock from another trainer (train --force);
        not a gin setting.
    Returns:
      TrainResult(model, step, metrics, model_dir, checkpoint path).
    Raises:
      TrainingInterrupted after SIGINT/SIGTERM (a checkpoint was saved first);
      TrainingDivergedError; ConfigurationError, CheckpointMismatchError and the dataset
      errors of genesis_tf.data before anything is written.
    """
    # Every argument, as one object the helpers below read (the signature is gin's).
    settings = types.SimpleNamespace(**{name: value for name, value in locals().items()
                                        if name != "model_dir"})
    return _run(model_dir, settings)


def _run(model_dir, settings):
    """train() on one writer's run directory: the chief holds its lock (run_lock) while it
    trains; other workers of a cluster write only into their scratch folders."""
    strategy = _checked_strategy(model_dir, settings)
    if not strategy.extended.should_checkpoint:
        return _train(model_dir, settings, strategy)
    with run_lock.RunLock(model_dir, force=settings.force):
        return _train(model_dir, settings, strategy)


def _train(model_dir, settings, strategy):
    """State, restore or warm start, the run's records, the loops, the result."""
    if settings.seed is not None:  # the initial weights too, not only data and noise
        keras.utils.set_random_seed(settings.seed)
    state = TrainState.build(settings.model, settings.image_size, strategy, settings.precision)
    description = config_of(state.model)
    checkpoints.check_same_model(model_dir, description)
    kl_weights = None if settings.kl_weights is None else _checked_kl_weights(
        settings.kl_weights, state.term_means, state.model)
    chief = strategy.extended.should_checkpoint
    # Every worker takes part in saving; the others into a scratch folder, removed below.
    save_dir = model_dir if chief else os.path.join(
        model_dir, f"worker_tmp_{strategy.cluster_resolver.task_id}")
    tf.io.gfile.makedirs(save_dir)
    if settings.restore_checkpoint:  # a damaged choice is refused before anything else
        run_safety.checked_checkpoint(settings.restore_checkpoint, model_dir)
    if chief:  # orphans of crashed saves go; a damaged newest checkpoint is skipped
        run_safety.prepare_resume(model_dir)
    warm, warm_start = {}, settings.warm_start
    restored = state.restore_or_initialize(
        model_dir, init_fn=state.warm_start_fn(warm_start, warm) if warm_start else None,
        path=settings.restore_checkpoint)
    start_step = int(state.step.numpy())
    manager = state.manager(save_dir, settings.keep_checkpoints, settings.checkpoint_every)
    inner = _InnerLoop(state, strategy, settings, kl_weights,
                       data_start=0 if warm else start_step)  # a warm start reads from 0
    if chief:  # after the input pipeline, so that train_dataset.* is recorded too
        _record_run(model_dir, description, settings, start_step)
    if restored:
        print(f"Resumed from {restored} at step {start_step}.", flush=True)
    elif warm:
        print(f"Starting from the weights in {settings.warm_start} (step {start_step}, GECO beta "
              f"{warm['beta']:.3g}); the optimizer starts afresh.", flush=True)
    writers = _writers(model_dir, strategy.extended.should_save_summary, settings,
                       start_step)
    budget, progress = actions_lib.TimeBudget(settings.max_minutes), Progress(settings.num_steps)
    progress.deadline = budget.deadline
    try:
        with actions_lib.StopSignals() as stop:
            step, metrics = _outer_loop(
                state, inner, _actions(state, manager, writers, progress, settings,
                                       images=strategy.extended.should_save_summary),
                manager, settings, (budget, stop, progress))
    finally:
        for writer in writers:
            writer.flush()
    if not chief:
        _remove_scratch(save_dir)
    return TrainResult(state.model, step, metrics, model_dir, manager.latest_checkpoint)


# train.<name>: the least value each count may take (integers only).
COUNTS = {"batch_size": 1, "num_steps": 0, "steps_per_loop": 1, "checkpoint_every": 0,
          "keep_checkpoints": 1, "summary_every": 0, "image_summary_every": 0,
          "validation_every": 0, "validation_batches": 1}


def _check_settings(settings):
    """One ConfigurationError line for a setting that cannot work (a count that is not a
    whole number or is too small, a time that is not positive), before anything is built."""
    for name, least in COUNTS.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigurationError(
                f"train.{name} must be a whole number >= {least}, got {value!r}")
    for name in ("max_minutes", "log_every_seconds"):
        value = getattr(settings, name)
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (int, float)) or value < 0):
            raise ConfigurationError(f"train.{name} must be a number >= 0, got {value!r}")


def _checked_strategy(model_dir, settings):
    """The strategy to train under, after the checks that need nothing built."""
    _check_settings(settings)
    try:
        precision_lib.check_hardware(settings.precision)  # also rejects unknown names
        strategy = settings.strategy
        if isinstance(strategy, str):
            strategy = make_strategy(strategy)
    except ValueError as error:  # an unknown precision or strategy name
        raise ConfigurationError(str(error)) from error
    if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
        raise ConfigurationError(
            f"--model_dir={model_dir} is a file; give a directory (new or of an earlier run)")
    data_lib.check_available(settings.dataset, settings.data_dir)  # before anything is written
    if settings.batch_size % strategy.num_replicas_in_sync:
        raise ConfigurationError(
            f"train.batch_size {settings.batch_size} must be divisible by the "
            f"{strategy.num_replicas_in_sync} replicas")
    return strategy


def _remove_scratch(folder):
    """Removes a worker's scratch folder, on gs:// as on local disks (tf.io.gfile)."""
    try:
        tf.io.gfile.rmtree(folder)
    except tf.errors.OpError:  # already gone: nothing to clean
        pass


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


def _record_run(model_dir, description, settings, start_step):
    """model.json, run.json and operative_config.gin (the previous one kept when settings
    changed)."""
    runs.write_description(model_dir, description)
    runs.write_run_info(model_dir, settings.dataset, settings.data_dir, settings.image_size,
                        model=description)
    changes = checkpoints.record_operative_config(
        model_dir, gin.operative_config_str(), start_step)
    if changes and start_step:
        print(f"Resuming with changed settings (recorded in {model_dir}/"
              f"{checkpoints.HISTORY_DIR}): " + "; ".join(changes), flush=True)


def _writers(model_dir, enabled, settings, start_step):
    """(train, val) summary writers: no-op writers where this worker writes none, where a
    rerun has no step left to train (no empty event files) and, for val/, where
    validation is off (no empty folder)."""
    train_on = enabled and start_step < settings.num_steps
    val_on = train_on and settings.validation_every > 0
    return tuple(tf.summary.create_file_writer(os.path.join(model_dir, name)) if on
                 else tf.summary.create_noop_writer()
                 for name, on in (("train", train_on), ("val", val_on)))


class _InnerLoop:
    """Runs n replica steps in one tf.function call (a tf.range loop), each step's loss
    terms into the state's term means. The first call traces, and says so."""

    def __init__(self, state, strategy, settings, kl_weights, data_start):
        self.state, self.dataset, self.data_dir = state, settings.dataset, settings.data_dir
        iterator = iter(strategy.distribute_datasets_from_function(
            _dataset_fn(settings, data_start)))
        replica_step = make_train_step(
            state.model, state.optimizer, state.geco, settings.batch_size,
            loss_scaling=state.loss_scaling, deterministic=settings.deterministic_posterior,
            seed_fn=_noise_seed_fn(settings.seed, state.step), kl_weights=kl_weights)

        @tf.function
        def loop(n):
            for _ in tf.range(n):
                per_replica = strategy.run(replica_step, args=(next(iterator)["image"],))
                means = strategy.experimental_local_results(per_replica)[0]  # all-reduced
                for name, value in means.items():
                    state.term_means[name].update_state(value)
                state.step.assign_add(1)

        self._loop, self._traced = loop, False

    def __call__(self, n, progress):
        if not self._traced:
            print("Compiling the training step (the first call traces the graph)…",
                  flush=True)
            started = time.monotonic()
        try:
            self._loop(tf.constant(n, tf.int64))
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            data_lib.raise_if_corrupt(error, self.dataset, self.data_dir)
            raise
        step = int(self.state.step.numpy())
        if not self._traced:
            print(f"Compiled and ran {n} step(s) in {time.monotonic() - started:.1f} s.",
                  flush=True)
            progress.start(step)  # the ETA leaves tracing out
            self._traced = True
        return step


def _dataset_fn(settings, data_start):
    """The per-input-pipeline training data (train_dataset.* binds the pipeline's own
    knobs); a resumed seeded run skips the examples consumed before data_start."""
    if data_start and settings.seed is not None:
        print(f"Skipping the {data_start * settings.batch_size:,} examples consumed before step "
              f"{data_start} (train.seed is set, so the data order continues exactly)…",
              flush=True)

    def dataset_fn(input_context):
        skip = data_start * settings.batch_size // input_context.num_input_pipelines
        return config_lib.train_dataset(
            settings.dataset, settings.image_size, settings.batch_size,
            data_dir=settings.data_dir, seed=settings.seed, input_context=input_context,
            skip_examples=skip if settings.seed is not None else 0)

    return dataset_fn


def _noise_seed_fn(seed, step):
    """With train.seed set, each (step, replica) draws reproducible posterior noise, so a
    resumed run continues exactly as an uninterrupted one; None without a seed."""
    if seed is None:
        return None

    def noise_seed():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        mixed = (tf.cast(seed, tf.int64) * 1_000_003 + step.read_value() * 64
                 + tf.cast(replica, tf.int64))
        return tf.cast(mixed % (2**31 - 1), tf.int32)

    return noise_seed


def _actions(state, manager, writers, progress, settings, images):
    """The outer loop's actions in order: the guard first, the checkpoint last."""
    train_writer, val_writer = writers
    model = state.model

    def preview():
        return next(iter(data_lib.train_dataset(
            settings.dataset, settings.image_size, 8, data_dir=settings.data_dir, seed=0,
            shuffle=False)))["image"]

    def validation():
        return elbo_metrics.evaluate(model, settings.dataset, settings.image_size,
                                     settings.batch_size, settings.data_dir,
                                     settings.validation_batches)

    Periodic = actions_lib.Periodic  # noqa: N806 (a class)
    return [
        actions_lib.DivergenceGuard(settings.max_elbo, manager),
        actions_lib.ProgressLog(progress, settings.log_every_seconds),
        Periodic(settings.summary_every, actions_lib.WriteSummaries(train_writer, state.term_means,
                                                             progress)),
        *([Periodic(settings.image_summary_every, actions_lib.WriteImages(train_writer, model,
                                                                   preview),
                    at_end=bool(settings.image_summary_every))] if images else []),
        Periodic(settings.validation_every, actions_lib.Validate(val_writer, validation),
                 at_end=False),
        actions_lib.SaveCheckpoint(manager, periodic=bool(settings.checkpoint_every)),
    ]


def _outer_loop(state, inner, actions, manager, settings, clocks):
    """Inner loops until num_steps, the time budget or a signal; returns (step, metrics)."""
    budget, stop, progress = clocks
    step, metrics = int(state.step.numpy()), {}
    while step < settings.num_steps:
        n = min(settings.steps_per_loop, settings.num_steps - step)
        step = inner(n, progress)
        metrics = state.metrics(with_geco=settings.kl_weights is None)
        interrupted = stop.received  # read once: a signal arriving later waits a loop
        out_of_time = budget.expired()
        final = step >= settings.num_steps or out_of_time or interrupted is not None
        tick = actions_lib.Tick(step, n, metrics, final)
        for action in actions:
            action(tick)
        if interrupted is not None:
            raise TrainingInterrupted(interrupted, step, manager.latest_checkpoint)
        if out_of_time:
            print(f"Stopping after {settings.max_minutes} minutes at step {step}.", flush=True)
            break
    return step, metrics

"""The training state: what a run trains and checkpoints, built in one place.

    state = TrainState.build(model_fn, image_size, strategy, precision)
    path = state.restore_or_initialize(model_dir, init_fn=state.warm_start_fn(file, record))
    manager = state.manager(save_dir, max_to_keep, checkpoint_every)
    manager.save(checkpoint_number=step, check_interval=True)

Every variable is created under `strategy.scope()`: the model (under the precision
policy), the optimizer (`make_optimizer.*` in gin, built before the first `strategy.run`:
slots created lazily inside it fail under MirroredStrategy; wrapped in a
LossScaleOptimizer for mixed_float16), GECO (`GECO.*`), the step counter and one
keras.metrics.Mean per loss term.

The checkpoint layout (`checkpoint_of`) is the on-disk format of every run, the converted
reference runs included: its child names model/optimizer/geco/step must not change, or
existing checkpoints stop restoring.
"""
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from genesis_tf import run_safety, runs
from genesis_tf.geco import configured_geco
from genesis_tf.models.base import elbo, summary_name
from genesis_tf.training import precision as precision_lib
from genesis_tf.training.config import ConfigurationError
from genesis_tf.training.optimizers import make_optimizer

ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


class _Checkpoint(tf.train.Checkpoint):
    """tf.train.Checkpoint whose restore() insists that every object of the training state
    found its value in the file: CheckpointManager.restore_or_initialize drops the status
    this check needs."""

    def restore(self, save_path, options=None):
        status = super().restore(save_path, options=options)
        status.assert_existing_objects_matched()
        return status


def checkpoint_of(model, optimizer, geco, step):
    """The training checkpoint: its child names are the format of every saved run."""
    return _Checkpoint(model=model, optimizer=optimizer, geco=geco, step=step)


def step_variable(value=0):
    """The step counter: int64, written by the first replica only."""
    return tf.Variable(value, dtype=tf.int64, trainable=False, name="step",
                       aggregation=ONLY_FIRST)


def _build_model(model_fn, image_size, precision):
    try:
        model = precision_lib.with_policy(precision, lambda: model_fn(image_size=image_size))
    except (TypeError, ValueError) as error:  # a binding the model refuses (K=1, size 48)
        raise ConfigurationError(
            f"the model cannot be built: {str(error).splitlines()[0]} (check its "
            "bindings in the gin files, e.g. Genesis.num_slots)") from error
    return model.build_for_images()


class TrainState(NamedTuple):
    model: Any
    optimizer: Any  # a LossScaleOptimizer around the configured one with mixed_float16
    geco: Any
    step: tf.Variable
    term_means: dict  # loss term ('err', 'kl/m', ...) -> keras.metrics.Mean
    checkpoint: tf.train.Checkpoint
    loss_scaling: bool

    @classmethod
    def build(cls, model_fn, image_size, strategy, precision="float32"):
        """Creates the state under `strategy.scope()`; the optimizer and GECO take their
        settings from gin (make_optimizer.*, GECO.*)."""
        with strategy.scope():
            model = _build_model(model_fn, image_size, precision)
            try:
                optimizer = make_optimizer()
            except ValueError as error:  # an unknown name, a learning rate <= 0, ...
                raise ConfigurationError(str(error)) from error
            loss_scaling = precision == "mixed_float16"  # float16 gradients underflow
            if loss_scaling:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)  # slots must exist before strategy.run
            geco = configured_geco(image_size, image_size)
            step = step_variable()
            images = tf.zeros([1, image_size, image_size, 3])
            term_names = model.loss_terms(images, model(images, training=False))
            term_means = {name: keras.metrics.Mean(name=summary_name(name))
                          for name in term_names}
        return cls(model, optimizer, geco, step, term_means,
                   checkpoint_of(model, optimizer, geco, step), loss_scaling)

    def restore_or_initialize(self, model_dir, init_fn=None, path=None):
        """Restores `path` (a checkpoint the user chose; checked whole first) or else the
        latest checkpoint in model_dir, refusing one that does not hold this whole model
        (CheckpointMismatchError) or is damaged (run_safety.DamagedCheckpointError);
        without one, calls init_fn (a warm start). Returns the path restored, or None."""
        reader = tf.train.CheckpointManager(self.checkpoint, model_dir, max_to_keep=None,
                                            init_fn=init_fn)
        latest = path and run_safety.checked_checkpoint(path, model_dir)
        latest = latest or reader.latest_checkpoint
        if latest is None:
            return reader.restore_or_initialize()
        runs.check_holds_model(latest, self.model, model_dir)
        configured_rate = self._learning_rate().numpy()
        try:
            with run_safety.reading_checkpoint(latest, model_dir):
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            # The optimizer's learning rate is a variable of the checkpoint; the configured
            # one (make_optimizer.learning_rate) wins, as the resume message promises.
            self._learning_rate().assign(configured_rate)
            return latest
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise runs.CheckpointMismatchError(
                f"the checkpoint {latest} does not fit the configured model "
                f"({str(error).splitlines()[0][:300]}). Use a new --model_dir, or the gin "
                f"configuration that {runs.OPERATIVE_CONFIG} in its folder "
                "records.") from error

    def _learning_rate(self):
        """The optimizer's learning-rate variable (inside a LossScaleOptimizer too)."""
        return getattr(self.optimizer, "inner_optimizer", self.optimizer).learning_rate

    def manager(self, directory, max_to_keep, checkpoint_every=0):
        """The CheckpointManager that saves into `directory`: save(check_interval=True)
        writes when `checkpoint_every` steps have passed since the last checkpoint (or the
        start of this run); 0 leaves the interval unchecked (every save() writes)."""
        return tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep, step_counter=self.step,
            checkpoint_interval=checkpoint_every or None,
            last_checkpoint_step=int(self.step.numpy()))

    def warm_start_fn(self, path, record):
        """init_fn for restore_or_initialize: the weights, step and GECO state of a
        weights file (genesis_tf.training.warm_start); the optimizer starts afresh.
        `record` receives the file's {'step', 'beta', 'err_ema'}."""

        def warm_start():
            # Imported here: `python -m genesis_tf.training.warm_start` must not find its
            # own module already imported by the package (runpy warns about that).
            from genesis_tf.training import warm_start as warm_start_lib

            loaded = warm_start_lib.load_into(self.model, path)
            self.step.assign(loaded["step"])
            self.geco.beta.assign(loaded["beta"])
            self.geco.err_ema.assign(loaded["err_ema"])
            self.geco.initialised.assign(True)
            record.update(loaded)

        return warm_start

    def metrics(self, with_geco=True):
        """The term means since the last reset under their summary names, the negative
        ELBO, and GECO's β and error EMA unless fixed KL weights replace GECO."""
        values = {name: float(metric.result()) for name, metric in self.term_means.items()}
        metrics = {summary_name(name): value for name, value in values.items()}
        metrics["elbo"] = float(elbo(values))
        if with_geco:
            metrics["beta"] = float(self.geco.beta.numpy())
            metrics["err_ema"] = float(self.geco.err_ema.numpy())
        return metrics

"""Training: the state, the GECO step, the loop and its actions, checkpoints, gin."""
from genesis_tf.runs import CheckpointMismatchError, restore  # the tools reload runs there
from genesis_tf.training import config  # noqa: F401  (registers gin names)
from genesis_tf.training.loop import (
    ConfigurationError,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainResult,
    train,
)
from genesis_tf.training.state import TrainState
from genesis_tf.training.step import make_train_step

__all__ = ["CheckpointMismatchError", "ConfigurationError", "TrainResult", "TrainState",
           "TrainingDivergedError", "TrainingInterrupted", "make_train_step", "restore",
           "train"]

"""Training: strategy, the GECO step and loop, checkpoints, summaries, progress, gin."""
from genesis_tf.runs import CheckpointMismatchError, restore  # the tools reload runs there
from genesis_tf.training import config  # noqa: F401  (registers gin names)
from genesis_tf.training.loop import (
    ConfigurationError,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainResult,
    evaluate,
    train,
)
from genesis_tf.training.step import make_train_step

__all__ = ["CheckpointMismatchError", "ConfigurationError", "TrainResult", "TrainingDivergedError",
           "TrainingInterrupted", "evaluate", "make_train_step", "restore", "train"]

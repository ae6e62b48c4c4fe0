"""Training: strategy, the GECO loop, summaries, progress, gin registrations."""
from genesis_tf.training import config  # noqa: F401  (registers gin names)
from genesis_tf.training.loop import (
    CheckpointMismatchError,
    TrainingDivergedError,
    TrainResult,
    evaluate,
    train,
)

__all__ = ["CheckpointMismatchError", "TrainResult", "TrainingDivergedError", "evaluate",
           "train"]

"""Trains GENESIS-family models: the project's main binary.

    python -m genesis_tf.train --gin_file=gin_configs/gqn.gin --model_dir=runs/gqn

--gin_file and --gin_bindings repeat. Every run first restores the latest checkpoint in
--model_dir, so rerunning the same command resumes an interrupted run.
"""
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "gin bindings, e.g. 'train.batch_size = 8'.")
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs, operative config.")
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Imports here so --help is fast; nothing below creates a TF op before train() makes
    # its strategy (MultiWorkerMirroredStrategy must come first).
    from genesis_tf import data as data_lib
    from genesis_tf.training import CheckpointMismatchError, TrainingDivergedError, config, train

    try:
        config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"error: bad gin configuration: {error}", file=sys.stderr)
        return 2
    try:
        result = train(FLAGS.model_dir)
    except (data_lib.DatasetNotPreparedError, CheckpointMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    print(f"Finished at step {result.step}; checkpoint {result.checkpoint}", flush=True)
    return 0


def run():
    """Console-script entry point (genesis-train)."""
    app.run(main)


if __name__ == "__main__":
    run()

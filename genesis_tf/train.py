"""Trains GENESIS-family models: the project's main binary.

    python -m genesis_tf.train --gin_file=gin_configs/gqn.gin --model_dir=runs/gqn

--gin_file and --gin_bindings repeat. Every run first restores the latest checkpoint in
--model_dir, so rerunning the same command resumes an interrupted run; Ctrl-C (SIGINT)
or SIGTERM saves a checkpoint first and exits with 130 / 143.

Exit codes: 0 done, 2 a configuration, dataset or checkpoint problem (one line on
stderr says which and how to fix it), 3 diverged, 130/143 interrupted.
TensorFlow's and TFDS's own log lines are kept at warnings and above (TensorFlow's C++
start-up messages are hidden); --verbosity=0 (info) or higher shows them all, with
tracebacks for the errors above.
"""
import contextlib
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "gin config file(s), applied in order; a name "
                          "such as gqn.gin is looked up in the shipped gin_configs/.")
flags.DEFINE_multi_string("gin_bindings", [], "gin bindings, e.g. 'train.batch_size = 8'.")
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs, the run's config.")
flags.mark_flag_as_required("model_dir")

HELP_FLAGS = ("-h", "--help", "-?", "--helpshort", "--helpfull")


def quiet_logging(verbose):
    """Warnings and above from TensorFlow and TFDS unless --verbosity is given. The C++
    level must be set before TensorFlow is imported."""
    if not verbose:
        # 3 also hides the E-level 'failed call to cuInit' of CPU-only machines; real
        # errors reach the user as Python exceptions.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        logging.set_verbosity(logging.WARNING)
        import logging as python_logging

        for name in ("tensorflow", "tensorflow_datasets", "absl"):
            python_logging.getLogger(name).setLevel(python_logging.WARNING)
        # The CUDA stub's "Could not find cuda drivers" lines are written to the stderr
        # file descriptor before TensorFlow's log level applies: import with it muted.
        with _muted_stderr():
            import tensorflow  # noqa: F401
            import tensorflow_probability  # noqa: F401


@contextlib.contextmanager
def _muted_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # absl resets the verbosity flag's value under app.run: only an explicit flag counts.
    verbose = FLAGS["verbosity"].present and FLAGS.verbosity >= 0
    quiet_logging(verbose)
    # Imports here so --help is fast; nothing below creates a TF op before train() makes
    # its strategy (MultiWorkerMirroredStrategy must come first).
    from genesis_tf import data as data_lib
    from genesis_tf.training import (
        CheckpointMismatchError,
        ConfigurationError,
        TrainingDivergedError,
        TrainingInterrupted,
        config,
        train,
    )

    def fail(error, code):
        if verbose:
            logging.exception("details")
        print(f"error: {_without_gin_context(error)}", file=sys.stderr)
        return code

    try:
        config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    except (ValueError, SyntaxError, FileNotFoundError, OSError) as error:
        return fail(f"bad gin configuration: {_one_line(error)}", 2)
    try:
        result = train(FLAGS.model_dir)
    except TrainingInterrupted as stop:
        print(f"Interrupted ({_without_gin_context(stop)}).", file=sys.stderr, flush=True)
        return stop.exit_code
    except (data_lib.DatasetNotPreparedError, data_lib.DatasetCorruptError,
            data_lib.UnknownDatasetError, CheckpointMismatchError,
            NotADirectoryError) as error:
        return fail(error, 2)
    except ConfigurationError as error:
        return fail(f"bad gin configuration: {error}", 2)
    except TrainingDivergedError as error:
        return fail(error, 3)
    print(f"Finished at step {result.step}; checkpoint {result.checkpoint}", flush=True)
    return 0


def _without_gin_context(error):
    """The message without the "In call to configurable ..." lines gin appends."""
    return "\n".join(line for line in str(error).splitlines()
                     if not line.strip().startswith("In call to configurable"))


def _one_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines)[:600] if lines else type(error).__name__


def run():
    """Console-script entry point (genesis-train)."""
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        FLAGS.mark_as_parsed()
        print(FLAGS.main_module_help() if "--helpfull" not in sys.argv else str(FLAGS))
        sys.exit(0)
    app.run(main)


if __name__ == "__main__":
    run()

"""Trains GENESIS-family models: the project's main binary.

    python -m genesis_tf.train --gin_file=gin_configs/gqn.gin --model_dir=runs/gqn

--gin_file and --gin_bindings repeat. Every run first restores the newest checkpoint in
--model_dir that reads back whole (saying which damaged ones it skipped; --checkpoint picks
one by hand), so rerunning the same command resumes an interrupted run; Ctrl-C (SIGINT)
or SIGTERM saves a checkpoint first and exits with 130 / 143. One trainer at a time: a
lock file in --model_dir refuses a second one (--force takes over a lock whose trainer is
gone on another host; a dead process on this host is detected by itself).

Exit codes: 0 done, 2 a configuration, dataset or checkpoint problem (one line on
stderr says which and how to fix it), 3 diverged, 130/143 interrupted.
TensorFlow's and TFDS's own log lines are kept at warnings and above (TensorFlow's C++
start-up messages are hidden); --verbosity=0 (info) or higher shows them all, with
tracebacks for the errors above.
"""
import os
import sys

from absl import app, flags

from genesis_tf import cli
from genesis_tf.errors import UserError
from genesis_tf.gin_files import resolve_gin_file

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "gin config file(s), applied in order; a name "
                          "such as gqn.gin is looked up in the shipped gin_configs/.")
flags.DEFINE_multi_string("gin_bindings", [], "gin bindings, e.g. 'train.batch_size = 8'.")
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs, the run's config.")
flags.DEFINE_string("checkpoint", None, "Resume from this checkpoint of the run (e.g. "
                    "runs/gqn/ckpt-5000) instead of the newest one that reads back whole.")
flags.DEFINE_bool("force", False, "Take over --model_dir from another trainer's lock (only "
                  "when that trainer is not running).")
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _check_flags()
    cli.quiet_logging(cli.verbosity_requested(FLAGS))
    # Imports here so --help is fast; nothing below creates a TF op before train() makes
    # its strategy (MultiWorkerMirroredStrategy must come first).
    from genesis_tf.training import TrainingInterrupted, train

    parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    try:
        chosen = {"restore_checkpoint": FLAGS.checkpoint} if FLAGS.checkpoint else {}
        result = train(FLAGS.model_dir, force=FLAGS.force, **chosen)
    except TrainingInterrupted as stop:  # not an error: a checkpoint was saved
        print(f"Interrupted ({cli.without_gin_context(stop)}).", file=sys.stderr, flush=True)
        return stop.exit_code
    print(f"Finished at step {result.step}; checkpoint {result.checkpoint}", flush=True)
    return 0


def _check_flags():
    """Flag mistakes first: they need no TensorFlow (seconds to import). train() checks
    the same for callers of the library (and for remote paths, left to it here)."""
    for name in FLAGS.gin_file:
        try:
            resolve_gin_file(name)
        except FileNotFoundError as error:
            raise UserError(f"bad gin configuration: {error}") from error
    if "://" not in FLAGS.model_dir and os.path.isfile(FLAGS.model_dir):
        raise UserError(f"--model_dir={FLAGS.model_dir} is a file; give a directory (new "
                        "or of an earlier run)")


def parse_gin(gin_files, gin_bindings):
    """Parses the flags' gin files and bindings; gin's own parser errors (a misspelt name,
    bad syntax, a missing file) become one ConfigurationError line."""
    from genesis_tf.training import ConfigurationError, config

    try:
        config.parse(gin_files, gin_bindings)
    except (ValueError, SyntaxError, OSError) as error:
        raise ConfigurationError(f"bad gin configuration: {cli.one_line(error)}") from error


def run():
    """Console-script entry point (genesis-train)."""
    cli.run_main(main)


if __name__ == "__main__":
    run()

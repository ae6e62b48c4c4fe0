"""What every command-line binary shares: a quiet console, one handler that prints a
`genesis_tf.errors.UserError` as one line and exits with its code, and --help that exits 0
without importing TensorFlow."""
import contextlib
import functools
import os
import sys

HELP_FLAGS = ("-h", "--help", "-?", "--helpshort", "--helpfull")


def verbosity_requested(flags_values):
    """True when --verbosity was given explicitly (absl resets its value under app.run)."""
    return flags_values["verbosity"].present and flags_values.verbosity >= 0


def quiet_logging(verbose):
    """Warnings and above from TensorFlow and TFDS unless --verbosity is given. The C++
    level must be set before TensorFlow is imported."""
    if verbose:
        return
    from absl import logging

    # 3 also hides the E-level 'failed call to cuInit' of CPU-only machines; real
    # errors reach the user as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(logging.WARNING)
    import logging as python_logging

    for name in ("tensorflow", "tensorflow_datasets", "absl"):
        python_logging.getLogger(name).setLevel(python_logging.WARNING)
    # The CUDA stub's "Could not find cuda drivers" lines are written to the stderr
    # file descriptor before TensorFlow's log level applies: import with it muted.
    with muted_stderr():
        import tensorflow
        import tensorflow_probability  # noqa: F401

        # CUDA's initialisation (and its 'failed call to cuInit' on CPU-only machines)
        # happens on first device use, also when TensorFlow was imported before this call
        # (python -m genesis_tf.training.warm_start): do it here, muted.
        tensorflow.config.list_physical_devices("GPU")


@contextlib.contextmanager
def muted_stderr():
    """Silences the stderr file descriptor (C++ messages included) inside the block."""
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


def without_gin_context(error):
    """The message without the "In call to configurable ..." lines gin appends; lines
    of its own (a command to run) are kept."""
    return "\n".join(line for line in str(error).splitlines()
                     if not line.strip().startswith("In call to configurable"))


def one_line(error, limit=600):
    """An exception's message joined into one line (parser errors span several)."""
    lines = [line.strip() for line in without_gin_context(error).splitlines() if line.strip()]
    return " ".join(lines)[:limit] if lines else type(error).__name__


def run_main(main):
    """absl's app.run(main), except that --help prints the module's flags and exits 0, and
    a UserError raised by `main` becomes one line on stderr and its exit code."""
    from absl import app, flags

    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        flags.FLAGS.mark_as_parsed()
        try:
            print(flags.FLAGS.main_module_help() if "--helpfull" not in sys.argv
                  else str(flags.FLAGS), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    app.run(functools.partial(_reporting_user_errors, main))


def _reporting_user_errors(main, argv):
    from absl import flags, logging

    from genesis_tf.errors import UserError

    try:
        return main(argv)
    except UserError as error:
        if verbosity_requested(flags.FLAGS):
            logging.exception("details")
        return fail(error, error.exit_code)


def fail(error, exit_code=2):
    """Prints `error: <one line>` on stderr and returns `exit_code` (for main's return)."""
    print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
    return exit_code

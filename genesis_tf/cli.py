"""What every command-line binary shares: a quiet console, one handler that prints a
`genesis_tf.errors.UserError` (or a flag mistake) as one line and exits with its code, and
--help that exits 0 without importing TensorFlow.

Only binaries import this module (train, evaluate, visualise, demo, export, tools/*); the
libraries raise UserError and leave the reporting to it.
"""
import contextlib
import functools
import os
import re
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
        # (python -m genesis_tf.tools.write_weights): do it here, muted.
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
    """An exception's message joined into one line (parser errors span several), at most
    `limit` characters (None: all)."""
    lines = [line.strip() for line in without_gin_context(error).splitlines() if line.strip()]
    return " ".join(lines)[:limit] if lines else type(error).__name__


def run_main(main, flags_parser=None):
    """absl's app.run(main), except that --help prints the flags of main's module and exits
    0, a flag mistake is one line and exit 2, and a UserError raised by `main` becomes one
    line on stderr and its exit code. `flags_parser` replaces absl's flag parsing (it then
    handles --help itself)."""
    from absl import app, flags

    if flags_parser is None and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        flags.FLAGS.mark_as_parsed()
        # absl files the flags of the module run as __main__ under sys.argv[0]; a console
        # script or a forwarding module (python -m genesis_tf.build_dataset) runs a main
        # whose flags are filed under its module's name.
        module = sys.argv[0] if main.__module__ == "__main__" else main.__module__
        try:
            print(flags.FLAGS.module_help(module) if "--helpfull" not in sys.argv
                  else str(flags.FLAGS), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    app.run(functools.partial(_reporting_user_errors, main),
            flags_parser=flags_parser or _parse_flags)


def _parse_flags(argv):
    """absl's flag parsing with a mistake (a missing required flag, a bad value) as one
    line and exit 2, as a UserError; absl itself prints two lines and exits 1."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        missing = re.search(r"Flag (--\w+) must have a value other than None", str(error))
        problem = f"{missing[1]} is required" if missing else str(error)
        sys.exit(fail(f"{problem} (--help lists the flags)"))


def _reporting_user_errors(main, argv):
    """main(argv), with a UserError (or absl's UsageError) printed as one line and
    returned as its exit code."""
    from absl import app, flags, logging

    from genesis_tf.errors import UserError

    try:
        return main(argv)
    except (UserError, app.UsageError) as error:
        if verbosity_requested(flags.FLAGS):
            logging.exception("details")
        return fail(error, getattr(error, "exit_code", 2))


def fail(error, exit_code=2):
    """Prints `error: <one line>` on stderr and returns `exit_code` (for main's return).
    Not cut short: a UserError's message is ours and may end with the command to run."""
    print(f"error: {one_line(error, limit=None)}", file=sys.stderr, flush=True)
    return exit_code

"""What the command-line binaries (train, export) share: a quiet console, one-line errors,
and --help that exits 0 without importing TensorFlow."""
import contextlib
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
    """absl's app.run(main), except that --help prints the module's flags and exits 0."""
    from absl import app, flags

    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        flags.FLAGS.mark_as_parsed()
        try:
            print(flags.FLAGS.main_module_help() if "--helpfull" not in sys.argv
                  else str(flags.FLAGS), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader left, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    app.run(main)


class ProgressBar:
    """`label: done/total images (rate/s, ETA)` on stderr for long loops: redrawn in place
    on a terminal, one line every `every` seconds otherwise (logs, pipes)."""

    def __init__(self, label, total=None, stream=None, every=10.0):
        import time

        self._time = time.monotonic
        self.label, self.total, self.stream, self.every = label, total, stream or sys.stderr, every
        self._started = self._last = self._time()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0

    def __call__(self, done):
        self.done = done
        now = self._time()
        if self._tty or now - self._last >= self.every:
            self._last = now
            self._write(self.line(), end="\r" if self._tty else "\n")

    def line(self):
        elapsed = max(self._time() - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,}" + (f"/{self.total:,}" if self.total else "")
        text += f" images ({rate:.1f}/s"
        if self.total and rate > 0 and self.done < self.total:
            from genesis_tf.training.progress import format_duration

            text += f", ETA {format_duration((self.total - self.done) / rate)}"
        return text + ")"

    def finish(self):
        self._write(self.line() + " done", end="\n")

    def _write(self, text, end):
        self.stream.write(("\r\033[K" if self._tty else "") + text + end)
        self.stream.flush()

"""Helpers shared by the training tests: tiny configurations on synthetic scenes."""
import concurrent.futures
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
GIN_DIR = ROOT / "gin_configs"

TINY = [
    "IMAGE_SIZE = 32",
    "NUM_SLOTS = 3",
    "train.dataset = 'synthetic'",
    "train.batch_size = 4",
    "train.steps_per_loop = 1",
    "train.summary_every = 1",
    "train.image_summary_every = 1000",
    "train.checkpoint_every = 1",
    "train.validation_every = 0",
    "train.log_every_seconds = 0",
]

# For tests of the machinery around a model (run directories, signals, locks, divergence,
# damaged files), where the model does not matter: a BD-VAE traces its training step in a
# quarter of a tiny GENESIS's CPU time (3 s against 13 s), and these tests start many.
FAST_MODEL = ("train.model = @BDVAE", "BDVAE.latent_size = 8")


def parse(files=("smoke.gin",), bindings=()):
    from genesis_tf.training import config

    config.parse([str(GIN_DIR / f) for f in files], list(TINY) + list(bindings))


def _binary_env(env):
    """The test process's environment, quieter, with `env` applied (None unsets a name)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    return full_env


def run_binary(module, args, env=None, timeout=300):
    """Runs `python -m module args` and returns the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=_binary_env(env), timeout=timeout, cwd=ROOT)


def start_binary(module, args, env=None, timeout=600):
    """Starts `python -m module args` as a BackgroundProcess (its result() waits)."""
    return BackgroundProcess([sys.executable, "-m", module, *args], timeout=timeout,
                             env=_binary_env(env), cwd=ROOT)


def selected_tests(request):
    """The tests of the requesting module that this session runs (after -k, -m, ...), so a
    module fixture starts background work only for them."""
    return [item for item in request.session.items if item.module is request.module]


def in_background(function, *args, **kwargs):
    """Calls function(*args, **kwargs) in a thread and returns its future."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function, *args, **kwargs)
    pool.shutdown(wait=False)  # the thread ends when the call returns
    return future


class BackgroundProcess:
    """A subprocess started now that runs on the other core while this process goes on
    with other tests (it is mostly single-threaded import and tracing)."""

    def __init__(self, args, timeout=600, **kwargs):
        self._process = subprocess.Popen(args, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, **kwargs)
        self._output = in_background(self._process.communicate, timeout=timeout)

    def result(self):
        """Waits for the process: a CompletedProcess with its text output."""
        out, err = self._output.result()
        return subprocess.CompletedProcess(self._process.args, self._process.returncode,
                                           out, err)

    def kill(self):
        """Stops the process if it still runs (a session that ended early)."""
        self._process.kill()

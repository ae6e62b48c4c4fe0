"""Helpers shared by the training tests: tiny configurations on synthetic scenes."""
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


def parse(files=("smoke.gin",), bindings=()):
    from genesis_tf.training import config

    config.parse([str(GIN_DIR / f) for f in files], list(TINY) + list(bindings))


def run_binary(module, args, env=None, timeout=300):
    """Runs `python -m module args` and returns the CompletedProcess (text output)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=ROOT)

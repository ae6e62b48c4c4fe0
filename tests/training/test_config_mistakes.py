"""Configuration mistakes issue 30 found giving tracebacks (or no word at all): each is a
UserError whose one line names the setting, raised before anything is written; the binary
prints it as one line with exit 2 (checked in a fresh process for one of them, with the
read-only folder, the command-line CPU split and the seeded start)."""
import os
import subprocess
import sys

import gin
import pytest

from genesis_tf import cli
from genesis_tf.errors import UserError
from tests.helpers.training import (
    ROOT,
    BackgroundProcess,
    parse,
    selected_tests,
    start_binary,
)

# case -> (gin bindings, the one line on stderr, or its start when it quotes the model)
MISTAKES = {
    "negative_batch": (["train.batch_size = -4"],
                       "error: train.batch_size must be a whole number >= 1, got -4"),
    "zero_batch": (["train.batch_size = 0"],
                   "error: train.batch_size must be a whole number >= 1, got 0"),
    "fractional_batch": (["train.batch_size = 2.5"],
                         "error: train.batch_size must be a whole number >= 1, got 2.5"),
    "text_batch": (["train.batch_size = '4'"],
                   "error: train.batch_size must be a whole number >= 1, got '4'"),
    "negative_steps": (["train.num_steps = -1"],
                       "error: train.num_steps must be a whole number >= 0, got -1"),
    "negative_checkpoint_every": (
        ["train.checkpoint_every = -5"],
        "error: train.checkpoint_every must be a whole number >= 0, got -5"),
    "negative_learning_rate": (
        ["make_optimizer.learning_rate = -0.1"],
        "error: make_optimizer.learning_rate must be a number >= 0, got -0.1"),
    "unknown_optimizer": (
        ["make_optimizer.name = 'sgd'"],
        "error: make_optimizer.name: unknown optimizer 'sgd'; known: "),
    "unknown_precision": (["train.precision = 'float8'"], "error: unknown precision 'float8'"),
    "unknown_strategy": (["train.strategy = 'warp_drive'"],
                         "error: unknown strategy 'warp_drive'; use 'auto', "),
    "one_slot": (["NUM_SLOTS = 1"], "error: the model cannot be built: "),
    "image_size_48": (["IMAGE_SIZE = 48"], "error: the model cannot be built: "),
    "unknown_dataset": (["train.dataset = 'no_such_data'"],
                        "error: unknown dataset 'no_such_data'; choose one of ['apc', "),
    "unknown_dataset_config": (
        ["train.dataset = 'multi_dsprites/bogus'"],
        "error: unknown dataset 'multi_dsprites/bogus' (multi_dsprites has no config "
        "'bogus'); multi_dsprites has the configs ['colored', 'colored_unique', "
        "'offline_colored', 'offline_colored_unique']"),
}
SMOKE = ["--gin_file=smoke.gin", "--gin_bindings=train.num_steps = 1"]
SPLIT_CPU = """
from genesis_tf.training.strategy import make_strategy
print("mirrored_cpu:2 ->", make_strategy("mirrored_cpu:2").num_replicas_in_sync, "replicas")
"""


@pytest.fixture(scope="module")
def mistakes(request, tmp_path_factory):
    """The fresh processes of the selected tests, started together: {case: result}."""
    root = tmp_path_factory.mktemp("mistakes")
    wanted = " ".join(item.name for item in selected_tests(request))
    started = {}
    if "binary" in wanted:
        started["binary"] = start_binary("genesis_tf.train", [
            *SMOKE, f"--model_dir={root / 'binary'}", "--gin_bindings=train.batch_size = 2.5"])
    if "read_only" in wanted:
        started["read_only"] = _read_only_run(root)
    if "mirrored_cpu" in wanted:  # a fresh process: the CPU is not split yet
        started["mirrored_cpu"] = BackgroundProcess(
            [sys.executable, "-c", SPLIT_CPU], cwd=ROOT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return root, {case: process.result() for case, process in started.items()}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_each_mistake_is_one_line_before_anything_is_written(case, tmp_path):
    from genesis_tf.training import train

    bindings, expected = MISTAKES[case]
    gin.clear_config()
    try:
        parse(bindings=["train.num_steps = 1", *bindings])
        with pytest.raises(UserError) as raised:
            train(str(tmp_path / "run"))
    finally:
        gin.clear_config()
    assert raised.value.exit_code == 2
    line = f"error: {cli.one_line(raised.value)}"
    assert line.startswith(expected), line
    assert not (tmp_path / "run").exists()


def test_the_binary_prints_a_mistake_as_one_line_with_exit_2(mistakes):
    result = mistakes[1]["binary"]
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: train.batch_size must be a whole number >= 1, got 2.5"]


class _ReadOnlyRun:
    """A train run into a read-only bind mount of an empty folder, unmounted after."""

    def __init__(self, root):
        self.folder = root / "read_only"
        self.folder.mkdir()
        self.mounted = _mount_read_only(self.folder)
        self.process = start_binary("genesis_tf.train", [
            *SMOKE, f"--model_dir={self.folder / 'run'}"]) if self.mounted else None

    def result(self):
        if self.process is None:
            return None
        try:
            return self.process.result()
        finally:
            subprocess.run(["umount", str(self.folder)], check=False)


def _read_only_run(root):
    return _ReadOnlyRun(root)


def _mount_read_only(folder):
    if subprocess.run(["mount", "--bind", str(folder), str(folder)],
                      capture_output=True).returncode:
        return False
    if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)],
                      capture_output=True).returncode:
        subprocess.run(["umount", str(folder)], check=False)
        return False
    return True


def test_a_read_only_model_dir_is_one_line(mistakes, tmp_path):
    result = mistakes[1]["read_only"]
    if result is None:
        pytest.skip("this machine cannot make a read-only bind mount (not root)")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: cannot write to --model_dir=")
    assert "Read-only file system" in lines[0] and "pass a folder you can write to" in lines[0]


def test_mirrored_cpu_works_from_the_command_line(mistakes):
    """train.strategy = 'mirrored_cpu:N' splits the CPU itself in a fresh process, where
    nothing configured logical devices before (the command line's case)."""
    result = mistakes[1]["mirrored_cpu"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "mirrored_cpu:2 -> 2 replicas"


def test_train_seed_also_seeds_the_initial_weights(tmp_path):
    """Two runs with train.seed = 5 start from the same weights (num_steps = 0: the state
    is built, nothing trained), a third with another seed does not."""
    import numpy as np

    from genesis_tf.training import train

    weights = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        gin.clear_config()
        try:
            parse(bindings=[f"train.seed = {seed}"])
            weights[name] = train(str(tmp_path / name), num_steps=0).model.get_weights()
        finally:
            gin.clear_config()
    assert len(weights["a"]) > 100
    for first, second in zip(weights["a"], weights["b"], strict=True):
        np.testing.assert_array_equal(first, second)
    assert any(not np.array_equal(a, c) for a, c in zip(weights["a"], weights["c"],
                                                         strict=True))

"""python -m genesis_tf.visualise: its flags, --help and its one-line errors, in fresh
processes. The figures it draws of a trained run are tested beside the evaluation of the
same tiny run (tests/test_evaluate.py), which trains it once for both."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _visualise(*args):
    return subprocess.run([sys.executable, "-m", "genesis_tf.visualise", *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_help_lists_every_flag_users_type_and_exits_0():
    result = _visualise("--help")
    assert result.returncode == 0, result.stderr
    for flag in ("model_dir", "what", "out", "num_images", "num_slots", "slot", "dims",
                 "split", "seed", "checkpoint", "dataset", "data_dir"):
        assert f"--{flag}:" in result.stdout, flag
    text = " ".join(result.stdout.split())  # absl wraps long help lines
    assert "one of decomposition, generation, samples, traversal" in text
    assert "--num_images: Images (scenes) in the figure. (default: '8')" in text
    assert "--split: Dataset split of the input images. (default: 'test')" in text


@pytest.mark.parametrize("args, message", [
    (["--what=video"], "--what=video: choose from decomposition, generation, samples, "
                       "traversal"),
    (["--what=samples", "--num_images=0"], "--num_images=0: must be >= 1"),
    (["--what=traversal", "--slot=0"], "--slot=0: must be >= 1"),
    (["--what=traversal", "--dims=0"], "--dims=0: must be >= 1"),
    (["--what=decomposition", "--num_slots=0"], "--num_slots=0: must be >= 1"),
    (["--what=samples", "extra"], "unexpected arguments: extra"),
])
def test_flag_mistakes_are_one_line_errors(tmp_path, args, message):
    result = _visualise(f"--model_dir={tmp_path}", f"--out={tmp_path / 'x.png'}", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {message}"
    assert not (tmp_path / "x.png").exists()


def test_a_missing_required_flag_says_how_to_call_it(tmp_path):
    result = _visualise(f"--model_dir={tmp_path}", "--what=samples")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: --out is required (python -m genesis_tf.visualise")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_folder_that_is_no_run_is_a_one_line_error(tmp_path):
    result = _visualise(f"--model_dir={tmp_path}", "--what=samples",
                        f"--out={tmp_path / 'x.png'}")
    assert result.returncode == 2, result.stderr
    assert "is not a genesis_tf run directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

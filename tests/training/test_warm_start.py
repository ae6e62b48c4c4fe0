"""Weights files (genesis_tf.training.warm_start) and runs that start from them."""
import os
import shutil

import gin
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import runs
from genesis_tf.models import config_of
from genesis_tf.training import train
from genesis_tf.training import warm_start as warm_start_lib
from tests.helpers.training import TINY, parse, start_binary

SMOKE = "--gin_file=gin_configs/smoke.gin"


def _binary(model_dir, weights, *bindings):
    args = [SMOKE, f"--model_dir={model_dir}"]
    for binding in (*TINY, f"train.warm_start = '{weights}'", *bindings):
        args.append(f"--gin_bindings={binding}")
    return start_binary("genesis_tf.train", args)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A 3-step tiny run (K=3) and its weights file."""
    run = tmp_path_factory.mktemp("source")
    gin.clear_config()
    # GECO frozen at β = 0.25 (step size 0): the file must carry that β, and it shows that
    # GECO's own gin settings reach the loop's GECO.
    parse(bindings=["train.seed = 1", "train.num_steps = 3", "GECO.beta_init = 0.25",
                    "GECO.step_size_scale = 0.0"])
    train(str(run))
    gin.clear_config()
    path = str(run / "weights.npz")
    output, step = warm_start_lib.save_from_run(str(run), path)
    assert output == path and step == 3
    return run, path


def test_the_file_holds_every_variable_in_float16_with_the_training_state(weights):
    run, path = weights
    model = runs.restore(str(run))
    arrays, description, state = warm_start_lib.read(path)
    assert description == config_of(model)
    weights = warm_start_lib.weights_of(model)
    assert set(arrays) == set(weights)
    assert len(weights) >= len(model.trainable_variables) + 2  # with batch-norm statistics
    for key, variable in weights.items():
        stored = arrays[key]
        assert stored.dtype == np.float16
        np.testing.assert_allclose(stored.astype(np.float32), variable.numpy(),
                                   rtol=1e-3, atol=1e-4)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run)))
    assert state["step"] == 3 and state["beta"] == 0.25
    assert state["beta"] == pytest.approx(
        float(reader.get_tensor("geco/beta/.ATTRIBUTES/VARIABLE_VALUE")))
    assert state["err_ema"] == pytest.approx(
        float(reader.get_tensor("geco/err_ema/.ATTRIBUTES/VARIABLE_VALUE")))
    checkpoint_bytes = sum(os.path.getsize(p) for p in run.glob("ckpt-3.data-*"))
    assert os.path.getsize(path) < checkpoint_bytes / 4  # no optimizer state, half width


def test_the_binary_starts_from_the_weights_and_refuses_another_model(weights, tmp_path):
    _, path = weights
    # Learning rate 0: the trained weights must be exactly the file's (batch-norm
    # statistics still move in training mode, so only trainable variables are compared).
    started = _binary(tmp_path / "warm", path, "train.num_steps = 5",
                      "make_optimizer.learning_rate = 0.0")
    other = _binary(tmp_path / "other", path, "NUM_SLOTS = 4")
    missing = _binary(tmp_path / "missing", str(tmp_path / "nope.npz"))

    run = started.result()
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"Starting from the weights in {path} (step 3, GECO beta 0.25)" in run.stdout
    assert "Finished at step 5" in run.stdout
    arrays, _, _ = warm_start_lib.read(path)
    model = runs.restore(str(tmp_path / "warm"))
    keys = {id(v): k for k, v in warm_start_lib.weights_of(model).items()}
    for variable in model.trainable_variables:
        np.testing.assert_array_equal(variable.numpy(),
                                      arrays[keys[id(variable)]].astype(np.float32))
    assert runs.training_state(tf.train.latest_checkpoint(str(tmp_path / "warm")))[
        "step"] == 5

    refused = other.result()
    assert refused.returncode == 2
    assert "num_slots=3 (configured: 4)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not list((tmp_path / "other").glob("ckpt-*"))

    absent = missing.result()
    assert absent.returncode == 2 and "nope.npz does not exist" in absent.stderr


def test_the_writer_command_writes_a_runs_file_and_refuses_a_missing_run(weights, tmp_path):
    """genesis-write-weights (python -m genesis_tf.tools.write_weights) in fresh processes;
    the former `python -m genesis_tf.training.warm_start` names the new command."""
    run, path = weights
    output = tmp_path / "written.npz"
    written = start_binary("genesis_tf.tools.write_weights",
                           [f"--model_dir={run}", f"--output={output}"])
    missing = start_binary("genesis_tf.tools.write_weights",
                           [f"--model_dir={tmp_path / 'none'}", f"--output={tmp_path / 'x.npz'}"])
    former = start_binary("genesis_tf.training.warm_start",
                          [f"--model_dir={run}", f"--output={tmp_path / 'y.npz'}"])

    result = written.result()
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Wrote {output}" in result.stdout and "step 3" in result.stdout
    arrays, description, state = warm_start_lib.read(str(output))
    expected, expected_description, _ = warm_start_lib.read(path)
    assert description == expected_description and sorted(arrays) == sorted(expected)
    for key, value in expected.items():  # the same checkpoint as save_from_run's file
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
    assert state["step"] == 3 and state["beta"] == pytest.approx(0.25)

    refused = missing.result()
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and \
        "is not a genesis_tf run directory" in lines[0], refused.stderr
    assert not (tmp_path / "x.npz").exists()

    moved = former.result()
    assert moved.returncode == 2
    assert "python -m genesis_tf.tools.write_weights" in moved.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "y.npz").exists()


def test_a_file_that_is_not_a_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(warm_start_lib.WarmStartError, match="not a genesis_tf weights file"):
        warm_start_lib.read(str(bad))
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(warm_start_lib.WarmStartError, match="not a genesis_tf weights file"):
        warm_start_lib.read(str(tmp_path / "other.npz"))


def test_a_run_with_a_checkpoint_resumes_from_it_not_from_the_weights(weights, tmp_path,
                                                                      clean_gin, capsys):
    run, path = weights
    copy = tmp_path / "run"
    shutil.copytree(run, copy)  # holds ckpt-3 of its own
    parse(bindings=["train.seed = 1", "train.num_steps = 4", f"train.warm_start = '{path}'"])
    train(str(copy))
    out = capsys.readouterr().out
    assert "Resumed from" in out and "Starting from the weights" not in out

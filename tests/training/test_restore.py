"""A saved run restores in a fresh process to exactly the model the training process had."""
import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import runs
from genesis_tf.training import CheckpointMismatchError, restore, train
from tests.helpers.training import ROOT, BackgroundProcess, parse, selected_tests

_RESTORE_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
from genesis_tf.training import restore
model = restore(sys.argv[1])
images = np.load(sys.argv[2])
out = model(images, training=False, deterministic=True)
np.savez(sys.argv[3], recon=out.recon.numpy(), log_masks=out.log_masks.numpy(),
         sample=model.sample(batch_size=2, seed=3).recon.numpy())
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained in this process, and its outputs on fixed images."""
    import gin

    gin.clear_config()
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    parse(bindings=["train.seed = 1", "train.checkpoint_every = 3"])
    result = train(str(run_dir), num_steps=3)
    gin.clear_config()
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[5, 5]).numpy()
    out = result.model(images, training=False, deterministic=True)
    expected = {"recon": out.recon.numpy(), "log_masks": out.log_masks.numpy(),
                "sample": result.model.sample(batch_size=2, seed=3).recon.numpy()}
    return run_dir, images, expected, result


def _snippet():
    text = (ROOT / "BUILD.md").read_text()
    return re.search(r"<!-- restore-snippet[^>]*-->\n```python\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def fresh_processes(request, trained_run, tmp_path_factory):
    """The two fresh-process restores of the trained run, started together (two cores):
    test name -> (working directory, BackgroundProcess)."""
    run_dir, images, *_ = trained_run
    wanted = {item.originalname for item in selected_tests(request)}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    processes = {}
    if "test_restore_in_a_fresh_process_reproduces_the_trained_model" in wanted:
        work = tmp_path_factory.mktemp("restore")
        np.save(work / "images.npy", images)
        processes["restore"] = work, BackgroundProcess(
            [sys.executable, "-c", _RESTORE_SCRIPT, str(run_dir), str(work / "images.npy"),
             str(work / "out.npz")], timeout=300, cwd=work, env=env)
    if "test_build_md_restore_snippet_runs_as_written" in wanted and _snippet():
        work = tmp_path_factory.mktemp("snippet")
        (work / "runs").mkdir()
        os.symlink(run_dir, work / "runs" / "smoke")
        processes["snippet"] = work, BackgroundProcess(
            [sys.executable, "-c", _snippet().group(1)], timeout=300, cwd=work, env=env)
    yield processes
    for _, process in processes.values():
        process.kill()


def test_restore_in_a_fresh_process_reproduces_the_trained_model(trained_run,
                                                                 fresh_processes):
    _, images, expected, _ = trained_run
    tmp_path, process = fresh_processes["restore"]
    result = process.result()
    assert result.returncode == 0, result.stderr[-3000:]
    restored = np.load(tmp_path / "out.npz")
    for key, value in expected.items():
        np.testing.assert_allclose(restored[key], value, atol=1e-5, err_msg=key)
    # A model with the same architecture but not the trained weights (and statistics)
    # gives other outputs, so the comparison above can fail.
    from genesis_tf.models import Genesis

    fresh = Genesis(image_size=32, num_slots=3).build_for_images()
    other = fresh(images, training=False, deterministic=True).recon.numpy()
    assert np.max(np.abs(other - expected["recon"])) > 1e-3


def test_the_checkpoint_is_weights_adam_and_state_not_the_input_buffer(trained_run):
    run_dir, _, _, result = trained_run
    path = tf.train.latest_checkpoint(str(run_dir))
    model = result.model
    # Every model variable, the batch-norm statistics included.
    assert runs.saved_model_variables(path) == runs.weight_count(model)
    names = [name for name, _ in tf.train.list_variables(path)]
    assert sum("moving_variance" in n for n in names) == sum(
        v.path.endswith("moving_variance") for v in model.variables)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    others = sum(int(np.prod(v.shape)) for v in model.non_trainable_variables)
    expected_bytes = 4 * (3 * trainable + others)  # weights + Adam's two moments
    data = sum(os.path.getsize(p) for p in tf.io.gfile.glob(path + ".data-*"))
    assert expected_bytes <= data < 1.02 * expected_bytes + 100_000, (data, expected_bytes)


def test_restore_refuses_a_checkpoint_that_lacks_variables(trained_run, tmp_path):
    run_dir, _, _, result = trained_run
    # A checkpoint as earlier versions wrote it: the optimizer's view of the trainable
    # weights, without the layers held in lists and the batch-norm statistics.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / runs.MODEL_FILE).write_text((run_dir / runs.MODEL_FILE).read_text())
    saver = tf.train.Checkpoint(model=tf.train.Checkpoint(
        head=result.model.mask_encoder.head))
    saver.save(str(broken / "ckpt"))
    with pytest.raises(CheckpointMismatchError, match=r"holds \d+ of the model's 148 variables"):
        restore(str(broken))
    with pytest.raises(FileNotFoundError, match="not a genesis_tf run directory"):
        restore(str(tmp_path / "nothing"))


def test_build_md_restore_snippet_runs_as_written(fresh_processes):
    assert _snippet(), "BUILD.md lost its restore snippet"
    tmp_path, process = fresh_processes["snippet"]
    result = process.result()
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"ARI -?\d\.\d\d, SC \d\.\d\d, mSC \d\.\d\d", result.stdout)
    assert (tmp_path / "decomposition.png").stat().st_size > 1000


def test_run_info_is_read_from_run_json(tmp_path):
    runs.write_run_info(str(tmp_path), "multi_dsprites/colored", "/data/tfds", 64)
    assert runs.read_run_info(str(tmp_path)) == {
        "dataset": "multi_dsprites/colored", "data_dir": "/data/tfds", "image_size": 64}
    assert not list(tmp_path.glob("*.partial"))  # written under a temporary name
    assert runs.read_run_info(str(tmp_path / "missing")) == {
        "dataset": None, "data_dir": None, "image_size": None}


def test_run_info_of_older_runs_comes_from_the_operative_config(tmp_path):
    """Runs written before run.json record the dataset only as train.* gin bindings."""
    import gin

    long_path = "/data/" + "x" * 90  # gin continues it on the next line with a backslash

    @gin.configurable("probe_train")
    def configured(dataset=None, data_dir=None, image_size=None, model=None):
        return dataset, data_dir, model

    with gin.unlock_config():
        gin.parse_config([f"probe_train.data_dir = '{long_path}'",
                          "probe_train.dataset = 'multi_dsprites/colored'"])
    configured()
    (tmp_path / runs.OPERATIVE_CONFIG).write_text(
        gin.operative_config_str().replace("probe_train.", "train."))
    gin.clear_config()
    assert "\\\n" in (tmp_path / runs.OPERATIVE_CONFIG).read_text()
    assert runs.read_run_info(str(tmp_path)) == {
        "dataset": "multi_dsprites/colored", "data_dir": long_path, "image_size": None}


def test_an_edited_model_json_is_refused_and_training_writes_it_back(trained_run, tmp_path):
    """Issue 30: model.json edited to another K made every tool run another model."""
    import json
    import shutil

    from genesis_tf.models import config_of
    from genesis_tf.training import checkpoints

    run_dir, _, _, result = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    description = json.loads((copy / runs.MODEL_FILE).read_text())
    description["config"]["num_slots"] = 5
    (copy / runs.MODEL_FILE).write_text(json.dumps(description))
    with pytest.raises(runs.ModelFileChangedError) as raised:
        runs.restore(str(copy))
    assert str(raised.value) == (
        f"{copy / runs.MODEL_FILE} was changed after training wrote it: num_slots 5 "
        "(trained: 3). Put the trained values back (run.json records them); to decompose "
        "into another number of slots pass --num_slots to evaluate, visualise or export "
        "instead")
    # Resuming with the run's own configuration is not refused (it rewrites model.json).
    checkpoints.check_same_model(str(copy), config_of(result.model))
    with pytest.raises(CheckpointMismatchError, match="num_slots 3 -> 5"):
        checkpoints.check_same_model(str(copy), dict(config_of(result.model), config=dict(
            config_of(result.model)["config"], num_slots=5)))


def test_a_truncated_model_json_is_one_line(trained_run, tmp_path):
    import shutil

    run_dir = trained_run[0]
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    text = (copy / runs.MODEL_FILE).read_text()
    (copy / runs.MODEL_FILE).write_text(text[:len(text) // 2])
    with pytest.raises(runs.DamagedRunFileError) as raised:
        runs.restore(str(copy))
    message = str(raised.value)
    assert message.startswith(f"{copy / runs.MODEL_FILE} is damaged (not JSON: ")
    assert message.endswith("restore it from a copy, or rerun python -m genesis_tf.train "
                            "with the run's gin files and this --model_dir, which writes it "
                            "again") and "\n" not in message

"""The training loop: replicas, resumption, guards, summaries."""
import glob
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.models import Genesis
from genesis_tf.training import TrainingDivergedError, train
from tests.helpers.training import FAST_MODEL, ROOT, BackgroundProcess, parse, selected_tests


def _checkpoint_values(path):
    reader = tf.train.load_checkpoint(path)
    values = {}
    dtypes = reader.get_variable_to_dtype_map()
    for name in reader.get_variable_to_shape_map():
        if not (dtypes[name].is_floating or dtypes[name].is_integer or dtypes[name].is_bool):
            continue  # the object graph and the input pipeline's variant state
        value = np.asarray(reader.get_tensor(name))
        if value.dtype.kind in "fiub" and "save_counter" not in name:
            values[name] = value
    return values


_REPLICA_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.helpers.training import parse
from genesis_tf.models import Genesis
from genesis_tf.training import train
initial = [w for w in np.load(sys.argv[1] + "/initial.npz").values()]
def same_start(image_size):
    model = Genesis(image_size=image_size, num_slots=3).build_for_images()
    model.set_weights(initial)
    return model
# Adam's first step is lr*sign(g) for |g| >> eps, which flips on rounding noise where
# g ~ 0; a large eps makes the step proportional to g, so a wrong gradient shows.
parse(bindings=["train.num_steps = 1", "train.deterministic_posterior = True",
                "make_optimizer.learning_rate = 1e-2", "make_optimizer.epsilon = 1.0"])
one = train(sys.argv[1] + "/one", model=same_start, strategy="default")
two = train(sys.argv[1] + "/two", model=same_start, strategy="mirrored_cpu:2")
print("CHECKPOINTS", one.checkpoint, two.checkpoint)
"""


@pytest.fixture(scope="module", autouse=True)
def replica_run(request, tmp_path_factory):
    """Starts the process of the two-replica test before this module's other tests, which
    run meanwhile on the other core; that test comes last and waits for it."""
    if not any(item.originalname == "test_two_replicas_and_one_device_take_the_same_step"
               for item in selected_tests(request)):
        yield None
        return
    # A fresh process: collective ops of other MirroredStrategy instances in this process
    # (other tests) can collide with the synchronised batch norm's instance keys.
    tmp_path = tmp_path_factory.mktemp("replicas")
    reference = Genesis(image_size=32, num_slots=3).build_for_images()
    initial = [v.numpy() for v in reference.weights]
    np.savez(tmp_path / "initial.npz", *initial)
    process = BackgroundProcess(
        [sys.executable, "-c", _REPLICA_SCRIPT, str(tmp_path)], timeout=600, cwd=ROOT)
    yield reference, process
    process.kill()


def test_stopping_and_resuming_equals_an_uninterrupted_run(tmp_path, clean_gin):
    parse(bindings=["train.seed = 7"])
    tf.keras.utils.set_random_seed(3)
    train(str(tmp_path / "resumed"), num_steps=3)
    resumed = train(str(tmp_path / "resumed"), num_steps=6)
    tf.keras.utils.set_random_seed(3)
    straight = train(str(tmp_path / "straight"), num_steps=6)
    assert resumed.step == straight.step == 6
    a = _checkpoint_values(resumed.checkpoint)
    b = _checkpoint_values(straight.checkpoint)
    assert a.keys() == b.keys()
    assert any("optimizer" in k for k in a) and any("geco/err_ema" in k for k in a)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, clean_gin):
    parse(bindings=FAST_MODEL)
    good = train(str(tmp_path), num_steps=2)
    with pytest.raises(TrainingDivergedError, match="diverged at step 3.*ckpt-2"):
        train(str(tmp_path), num_steps=4, max_elbo=1.0)
    assert tf.train.latest_checkpoint(str(tmp_path)) == good.checkpoint


def test_summaries_use_the_reference_names(tmp_path, clean_gin):
    parse(bindings=["train.image_summary_every = 2", "train.validation_every = 2",
                    "train.validation_batches = 2"])
    train(str(tmp_path), num_steps=2)
    tags = set()
    for path in glob.glob(os.path.join(str(tmp_path), "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    for name in ("train/err", "train/kl_m", "train/kl_l", "train/elbo", "optim/beta",
                 "optim/geco_err_ema", "images/input", "images/recon",
                 "images/segmentation", "images/samples"):
        assert name in tags, (name, sorted(tags))
    val_tags = set()
    for path in glob.glob(os.path.join(str(tmp_path), "val", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            val_tags.update(v.tag for v in event.summary.value)
    assert {"val/err", "val/kl_m", "val/kl_l", "val/elbo"} <= val_tags
    config = (tmp_path / "operative_config.gin").read_text()
    assert "train.batch_size = 4" in config and "NUM_SLOTS = 3" in config


def test_progress_line(capsys):
    from genesis_tf.progress import Progress, format_duration

    progress = Progress(total_steps=1000)
    progress.start(0)
    line = progress.report(10, {"elbo": 2100.0, "err": 2000.0, "kl_m": 60.0, "kl_l": 40.0,
                                "beta": 0.5})
    for part in ("step      10/1000", "steps/s", "elbo     2100.0", "err     2000.0",
                 "kl_m   60.00", "beta 5.000e-01", "ETA"):
        assert part in line
    assert line in capsys.readouterr().out
    assert format_duration(90061) == "1d01h" and format_duration(61) == "1m01s"


def test_progress_eta_follows_the_time_budget(monkeypatch):
    from genesis_tf import progress as progress_lib

    clock = [1000.0]
    monkeypatch.setattr(progress_lib.time, "monotonic", lambda: clock[0])
    metrics = {"elbo": 1.0, "err": 1.0, "beta": 1.0}
    # 1 step/s with 99,990 steps left: the 5-minute budget ends first.
    progress = progress_lib.Progress(total_steps=100_000, stream=open(os.devnull, "w"),
                                     deadline=1000.0 + 300.0)
    progress.start(0)
    clock[0] += 10.0
    assert progress.report(10, metrics).endswith("ETA 4m50s (time budget)")
    # 10 steps left at 1 step/s end before the budget: the step count decides.
    short = progress_lib.Progress(total_steps=20, stream=open(os.devnull, "w"),
                                  deadline=clock[0] + 300.0)
    short.start(0)
    clock[0] += 10.0
    assert short.report(10, metrics).endswith("ETA 0m10s")


def _scalars(model_dir, tag):
    values = {}
    for path in glob.glob(os.path.join(str(model_dir), "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag == tag:
                    values[event.step] = float(tf.make_ndarray(v.tensor))
    return values


def test_summaries_are_means_over_the_steps_since_the_last_summary(tmp_path, clean_gin):
    # Two identical seeded runs: one summarises every step, the other every third.
    parse(bindings=["train.seed = 5", "train.checkpoint_every = 0"])
    tf.keras.utils.set_random_seed(4)
    train(str(tmp_path / "every"), num_steps=6)
    tf.keras.utils.set_random_seed(4)
    train(str(tmp_path / "third"), num_steps=6, summary_every=3)
    for tag in ("train/err", "train/kl_m", "train/kl_l", "train/elbo"):
        every, third = _scalars(tmp_path / "every", tag), _scalars(tmp_path / "third", tag)
        assert sorted(every) == [1, 2, 3, 4, 5, 6] and sorted(third) == [3, 6], (every, third)
        for step in (3, 6):
            mean = np.mean([every[s] for s in range(step - 2, step + 1)])
            np.testing.assert_allclose(third[step], mean, rtol=1e-5, err_msg=tag)
            assert abs(third[step] - every[step]) > 1e-4 * abs(mean)  # not the last step's
    # Validation was off: no val/ folder. A rerun with no step left writes no event file.
    assert not (tmp_path / "every" / "val").exists()
    events = sorted((tmp_path / "every" / "train").iterdir())
    assert train(str(tmp_path / "every"), num_steps=6).step == 6
    assert sorted((tmp_path / "every" / "train").iterdir()) == events


# Last: its process started with the module and ran during the tests above.
def test_two_replicas_and_one_device_take_the_same_step(replica_run):
    reference, process = replica_run
    result = process.result()
    assert result.returncode == 0, result.stderr[-3000:]
    one_path, two_path = result.stdout.split("CHECKPOINTS")[1].split()
    a, b = _checkpoint_values(one_path), _checkpoint_values(two_path)
    assert a.keys() == b.keys()
    compared = 0
    for name in a:
        if "_variables/" in name and "_trainable_variables/" not in name:
            continue  # Adam's moments: raw gradients, where summation order shows
        # weights, batch-norm statistics, β, err_ema, step
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, rtol=1e-5, err_msg=name)
        compared += 1
    assert compared > 100
    # The step moved the weights (both runs the same way, as checked above).
    trained = {int(k.split("/")[2]): v for k, v in a.items() if "_trainable_variables/" in k}
    assert len(trained) == len(reference.trainable_variables)
    moved = sum(not np.allclose(trained[i], v.numpy())
                for i, v in enumerate(reference.trainable_variables))
    assert moved > len(trained) // 2
    assert a["geco/beta/.ATTRIBUTES/VARIABLE_VALUE"] != 1.0

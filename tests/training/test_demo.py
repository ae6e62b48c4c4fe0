"""The demo end to end in a tiny mode, and the figures it draws."""
import os

import gin
import pytest
from PIL import Image

import genesis_tf
from genesis_tf.plotting import figures
from tests.helpers.training import run_binary, start_binary

# genesis_tf.demo.SHIPPED_WEIGHTS (importing the demo here would define its absl flags
# a second time in this process).
SHIPPED_WEIGHTS = os.path.join(os.path.dirname(genesis_tf.__file__), "demo_model",
                               "weights.npz")


def _demo(*args):
    return start_binary("genesis_tf.demo", args)


def _demo_model():
    """A fresh model as gin_configs/demo.gin builds it (gin left cleared)."""
    from genesis_tf.training import config

    gin.clear_config()
    config.parse([os.path.join(config.gin_configs_dir(), "demo.gin")])
    model = config.configured_model()
    gin.clear_config()
    return model


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """Three demo processes, overlapping: on synthetic scenes from scratch; on a 64-image
    offline Multi-dSprites from a weights file of the demo's model (step 7); and from one
    of another model (K=3)."""
    from genesis_tf.models import Genesis
    from genesis_tf.training import warm_start

    root = tmp_path_factory.mktemp("demo")
    synthetic = _demo(f"--output_dir={root / 'synthetic'}", "--dataset=synthetic",
                      "--max_steps=2", "--gin_bindings=NUM_SLOTS = 3",
                      "--gin_bindings=train.batch_size = 4",
                      "--gin_bindings=train.image_summary_every = 0")
    data_dir = root / "data"
    build = run_binary("genesis_tf.build_dataset", [
        "build", "tfds_builders/multi_dsprites", "--config=offline_colored",
        f"--data_dir={data_dir}", "--max_examples_per_split=64"])
    assert build.returncode == 0, build.stderr[-2000:]
    warm_start.save(_demo_model(), str(root / "demo.npz"), step=7, beta=0.5)
    warm_start.save(Genesis(image_size=32, num_slots=3).build_for_images(),
                    str(root / "k3.npz"))
    common = [f"--data_dir={data_dir}", "--max_steps=9", "--gin_bindings=train.batch_size = 4"]
    runs = {"demo": _demo(f"--output_dir={root / 'out'}", f"--weights={root / 'demo.npz'}",
                          *common),
            "other": _demo(f"--output_dir={root / 'other'}", f"--weights={root / 'k3.npz'}",
                           *common)}
    runs["synthetic"] = synthetic
    runs = {name: run.result() for name, run in runs.items()}
    # Run again: it resumes the run that started from the weights file.
    runs["again"] = _demo(f"--output_dir={root / 'out'}", *common[:-2], "--max_steps=11",
                          common[-1]).result()
    return root, runs


def test_demo_writes_figures_and_prints_where(demo_runs):
    root, runs = demo_runs
    result, tmp_path = runs["synthetic"], root / "synthetic"
    assert result.returncode == 0, result.stderr[-3000:]
    # The shipped demo model has K=4: this K=3 demo cannot use it and says why.
    assert "Starting from" not in result.stdout
    assert ("Training from a random initialisation" in result.stdout
            and "num_slots=4 (configured: 3)" in result.stdout), result.stdout
    # 8 rows; input, reconstruction, segmentation and K=3 slots and masks; generation: the
    # K canvases of the slot-by-slot build and the segmentation.
    for name, columns in (("decomposition.png", 3 + 2 * 3), ("generation.png", 3 + 1)):
        path = tmp_path / name
        assert str(path) in result.stdout
        assert Image.open(path).size == figures.figure_size(8, columns)
    assert "on 256 test images: foreground ARI" in result.stdout
    assert "the GENESIS paper: foreground ARI 0.57" in result.stdout
    assert "Done after 2 steps" in result.stdout
    assert (tmp_path / "model" / "ckpt-2.index").exists()


def test_demo_continues_training_from_a_weights_file(demo_runs):
    root, runs = demo_runs
    result = runs["demo"]
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"Starting from {root / 'demo.npz'}, trained for 7 steps: foreground ARI" in out
    assert "on 64 test images" in out
    assert f"started from {root / 'demo.npz'} at step 7" in out
    assert "2 steps trained here" in out and "Done after 9 steps" in out
    assert (root / "out" / "model" / "ckpt-9.index").exists()
    assert Image.open(root / "out" / "decomposition.png").size == figures.figure_size(
        8, 3 + 2 * 4)
    assert "at learning rate 0.0001 (a trained model's" in out  # not demo.gin's 5e-4


def test_demo_run_again_resumes_and_remembers_its_start(demo_runs):
    root, runs = demo_runs
    result = runs["again"]
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Starting from" not in out  # no new start: the checkpoint is resumed
    assert f"started from {root / 'demo.npz'} at step 7" in out
    assert "4 steps trained here" in out and "Done after 11 steps" in out
    assert "at learning rate 0.0001" in out


def test_demo_refuses_weights_of_another_model_in_one_line(demo_runs):
    root, runs = demo_runs
    result = runs["other"]
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: --weights: {root / 'k3.npz'} holds a "
                                            "Genesis with num_slots=3 (configured: 4)")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_shipped_demo_model_decomposes_and_says_how_it_was_trained(demo_runs):
    """The weights `make demo` starts from load into the model demo.gin builds, separate
    the sprites of offline Multi-dSprites test images (a model with all foreground in one
    slot scores about 0.25 foreground ARI and 0.07 mSC there), and the README beside them
    states the step they hold."""
    from genesis_tf.metrics.segmentation import segmentation_scores
    from genesis_tf.training import warm_start

    assert os.path.exists(SHIPPED_WEIGHTS), "genesis_tf/demo_model/weights.npz is missing"
    model = _demo_model()
    state = warm_start.load_into(model, SHIPPED_WEIGHTS)
    assert state["step"] > 0 and 0 < state["beta"] < 1
    readme = open(os.path.join(os.path.dirname(SHIPPED_WEIGHTS), "README.md")).read()
    assert f"step {state['step']:,}" in readme, "README.md must name the step it holds"
    root, _ = demo_runs  # its data: the first 64 examples of each split
    scores, _ = segmentation_scores(model, "multi_dsprites/offline_colored", 32, 64,
                                    data_dir=str(root / "data"))
    assert scores["num_images"] == 64
    assert scores["fg_ari"] > 0.35 and scores["msc"] > 0.25, scores

"""Every model of genesis_tf works with every consumer of the contract, by name and with no
special case: gin, training summaries, the demo's figures, export."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import visualise
from genesis_tf.models import MODELS, config_of
from genesis_tf.models.base import from_description
from genesis_tf.training import summaries

SIZE = 32
# Tiny sizes; the VAE baselines have no slots (one, to every consumer).
TINY = {"Genesis": {"num_slots": 3}, "GenesisS": {"num_slots": 3}, "MONet": {"num_slots": 3},
        "BDVAE": {}, "DCVAE": {}}


def test_every_model_is_listed():
    assert sorted(MODELS) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_summaries_figures_and_description_round_trip(name, tmp_path):
    model = MODELS[name](image_size=SIZE, **TINY[name]).build_for_images()
    images = tf.random.stateless_uniform([2, SIZE, SIZE, 3], seed=[7, 7])
    out = model(images, training=False)
    samples = model.sample(2, seed=0)
    slots = TINY[name].get("num_slots", 1)
    assert out.log_masks.shape == (2, slots, SIZE, SIZE, 1)
    np.testing.assert_allclose(tf.reduce_sum(tf.exp(out.log_masks), 1).numpy(), 1.0,
                               atol=1e-5)

    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    summaries.write_images(writer, 1, images.numpy(), out, samples)
    writer.flush()
    assert list((tmp_path / "train").glob("events.out.tfevents.*"))
    decomposition = visualise.decomposition_grid(images.numpy(), out)
    generation = visualise.generation_grid(samples)
    for figure in (decomposition, generation):
        assert figure.ndim == 3 and figure.shape[-1] == 3 and np.isfinite(figure).all()
    visualise.save_png(decomposition, str(tmp_path / "decomposition.png"))
    assert (tmp_path / "decomposition.png").stat().st_size > 0

    # The labelled figures of genesis_tf.visualise's command render for every model type.
    from PIL import Image

    from genesis_tf import figures

    drawn = {
        "decomposition": (figures.decomposition_figure(images.numpy(), out, title=name),
                          3 + 2 * slots, ["input", "reconstruction", "segmentation",
                                          f"slot {slots}: m·x", f"mask {slots}", "image 2"]),
        "generation": (figures.generation_figure(samples, title=name), slots + 1,
                       ["slot 1", "segmentation", "scene 2"] + (
                           [f"+ slot {slots}"] if slots > 1 else [])),
        "samples": (figures.samples_figure(samples, title=name, columns=2), 2,
                    ["samples\n1–2"]),
    }
    for what, (figure, columns, labels) in drawn.items():
        texts = figures.figure_text(figure)
        assert name in texts and all(label in texts for label in labels), (what, texts)
        path = figures.save_figure(figure, str(tmp_path / f"{what}.png"))
        rows = 1 if what == "samples" else 2
        assert Image.open(path).size == figures.figure_size(rows, columns)

    # What a run records (model.json) rebuilds the same architecture.
    rebuilt = from_description(config_of(model), MODELS).build_for_images()
    assert rebuilt.count_params() == model.count_params()


@pytest.mark.parametrize("name", ["MONet", "BDVAE"])
def test_export_takes_the_model(name, tmp_path):
    from genesis_tf.export import export_model

    model = MODELS[name](image_size=SIZE, **TINY[name]).build_for_images()
    export_model(model, str(tmp_path / name / "1"))
    loaded = tf.saved_model.load(str(tmp_path / name / "1"))
    images = tf.cast(tf.random.stateless_uniform([2, SIZE, SIZE, 3], seed=[1, 2],
                                                 maxval=256, dtype=tf.int32), tf.uint8)
    out = loaded.signatures["decompose"](images=images)
    expected = model(images, training=False, deterministic=True)
    np.testing.assert_allclose(out["reconstruction"].numpy(), expected.recon.numpy(),
                               atol=1e-5)
    slots = TINY[name].get("num_slots", 1)
    assert out["masks"].shape == (2, slots, SIZE, SIZE)
    assert ("z_mask" in out) == (expected.z_mask is not None)
    generated = loaded.signatures["generate"](num_images=tf.constant(2),
                                              seed=tf.constant(3, tf.int64))
    np.testing.assert_allclose(generated["images"].numpy(),
                               model.sample(2, seed=3).recon.numpy(), atol=1e-5)

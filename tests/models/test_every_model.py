"""Every model of genesis_tf works with every consumer of the contract, by name and with no
special case: gin, training summaries, the demo's figures, export."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.models import MODELS, config_of
from genesis_tf.models.base import from_description
from genesis_tf.plotting import grids
from genesis_tf.training import summaries

SIZE = 32
# Tiny sizes; the VAE baselines have no slots (one, to every consumer).
TINY = {"Genesis": {"num_slots": 3}, "GenesisS": {"num_slots": 3}, "MONet": {"num_slots": 3},
        "GenesisV2": {"num_slots": 3, "latent_size": 16}, "BDVAE": {}, "DCVAE": {}}


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
    decomposition = grids.decomposition_grid(images.numpy(), out)
    generation = grids.generation_grid(samples)
    for figure in (decomposition, generation):
        assert figure.ndim == 3 and figure.shape[-1] == 3 and np.isfinite(figure).all()
    grids.save_png(decomposition, str(tmp_path / "decomposition.png"))
    assert (tmp_path / "decomposition.png").stat().st_size > 0

    # The labelled figures of genesis_tf.visualise's command render for every model type.
    from PIL import Image

    from genesis_tf.plotting import figures

    # GENESIS-V2 shows its decoded masks, labelled so, and its IC-SBP masks in 1 + K more.
    two_sets = out.ic_sbp_log_masks is not None
    seg, mask = ("segmentation\n(decoded)", "decoded mask") if two_sets else ("segmentation",
                                                                                "mask")
    drawn = {
        "decomposition": (figures.decomposition_figure(images.numpy(), out, title=name),
                          3 + 2 * slots + two_sets * (1 + slots),
                          ["input", "reconstruction", seg, f"slot {slots}: m·x",
                           f"{mask} {slots}", "image 2"]
                          + two_sets * ["segmentation\n(IC-SBP)", f"IC-SBP mask {slots}"]),
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


@pytest.mark.parametrize("name", sorted(TINY))
def test_no_training_step_has_an_explicit_padding_conv(name):
    """TensorFlow's EXPLICIT-padding conv gradients run on slow generic kernels
    (genesis_tf/layers/conv_ops.py): every model's convs use "SAME" or "VALID"."""
    model = MODELS[name](image_size=SIZE, **TINY[name]).build_for_images()

    def grads(images):
        out = model(images, training=True)
        loss = sum(tf.reduce_sum(t) for t in model.loss_terms(images, out).values())
        return tf.gradients(loss, model.trainable_variables)

    graph = tf.function(grads).get_concrete_function(tf.TensorSpec([2, SIZE, SIZE, 3])).graph
    paddings = {op.get_attr("padding").decode() for op in graph.get_operations()
                if op.type.startswith("Conv2D")}
    assert paddings and paddings <= {"SAME", "VALID"}, paddings


@pytest.mark.parametrize("name", ["MONet", "BDVAE"])  # GENESIS-V2: tests/export
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


@pytest.mark.parametrize("name", sorted(TINY))
def test_decode_of_the_latents_redraws_the_scene_and_traversals_render(name, tmp_path):
    from PIL import Image

    from genesis_tf import traversal
    from genesis_tf.plotting import figures

    model = MODELS[name](image_size=SIZE, **TINY[name]).build_for_images()
    # Images of different brightness, so that even untrained encoders spread their means.
    images = tf.random.stateless_uniform([3, SIZE, SIZE, 3], seed=[8, 8]).numpy() * \
        np.array([0.1, 0.5, 1.0], np.float32)[:, None, None, None]
    out = model(images, training=False, deterministic=True)
    latents = model.latents(out)
    assert {group: z.shape[-1] for group, z in latents.items()} == model.latent_sizes()
    decoded = model.decode(latents)
    np.testing.assert_allclose(decoded.components.numpy(), out.components.numpy(),
                               atol=1e-5)
    if name == "MONet":  # no mask latent: the masks its component VAE decodes
        np.testing.assert_allclose(
            decoded.log_masks.numpy(),
            tf.nn.log_softmax(out.decoded_mask_logits, axis=1).numpy(), atol=1e-5)
    else:
        np.testing.assert_allclose(decoded.recon.numpy(), out.recon.numpy(), atol=1e-5)
        np.testing.assert_allclose(decoded.log_masks.numpy(), out.log_masks.numpy(),
                                   atol=1e-5)
    # Generated scenes have latents too (the prior's samples), decoded the same way.
    samples = model.sample(2, seed=1)
    np.testing.assert_allclose(model.decode(model.latents(samples)).recon.numpy(),
                               samples.recon.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="decode needs latents"):
        model.decode({"nothing": latents[next(iter(latents))]})

    result = traversal.traverse(model, images, dims_per_group=2, num_values=3)
    groups = list(model.latent_sizes())
    assert [group for group, _ in result.rows] == [g for g in groups for _ in range(2)]
    assert result.scenes.shape == (2 * len(groups), 3, SIZE, SIZE, 3)
    # Each scene is the decoding of the posterior means with one entry moved by
    # offset·std; the middle value is the posterior mean itself.
    row = len(result.rows) - 1
    group, dim = result.rows[row]
    moved = {g: z.numpy()[:1].repeat(3, 0) for g, z in latents.items()}
    moved[group][:, result.slot, dim] += result.offsets * result.stds[row]
    np.testing.assert_allclose(result.scenes[row], model.decode(moved).recon.numpy(),
                               atol=1e-5)
    mean_scene = decoded.recon.numpy()[0]
    np.testing.assert_allclose(result.scenes[:, 1], np.broadcast_to(
        mean_scene, result.scenes[:, 1].shape), atol=1e-5)
    assert np.all(result.stds > 0)
    figure = figures.traversal_figure(result, title=name)
    texts = figures.figure_text(figure)
    first = f"{groups[0]}\ndim {result.rows[0][1]}\nstd {result.stds[0]:.2g}"
    assert {name, "input", "mean", "-2 std", "+2 std", first} <= set(texts), texts
    path = figures.save_figure(figure, str(tmp_path / "traversal.png"))
    assert Image.open(path).size == figures.figure_size(2 * len(groups), 4)


def test_a_component_traversal_of_genesis_changes_only_its_slot():
    from genesis_tf import traversal

    model = MODELS["Genesis"](image_size=SIZE, num_slots=3).build_for_images()
    images = tf.random.stateless_uniform([3, SIZE, SIZE, 3], seed=[9, 9]).numpy()
    # An untrained encoder spreads its means little: a wide span makes the change visible.
    result = traversal.traverse(model, images, slot=1, dims_per_group=1, num_values=2,
                                span=2e3)
    assert result.slot == 1 and [g for g, _ in result.rows] == ["mask", "component"]
    # The component row keeps every mask: only slot 2's m·x differs between the values.
    out = model(images[:1], training=False, deterministic=True)
    masks = np.exp(out.log_masks.numpy()[0, :, ..., 0])  # [K, H, W]
    difference = np.abs(result.scenes[1, 0] - result.scenes[1, 1]).max(-1)
    assert difference.max() > 1e-3
    assert np.all(difference <= masks[1] + 1e-5)
    np.testing.assert_allclose(result.slot_masks[1, 0], masks[1], atol=1e-5)
    with pytest.raises(ValueError, match="slot 4 does not exist"):
        traversal.traverse(model, images, slot=3)

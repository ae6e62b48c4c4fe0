"""Input pipelines: shapes, ranges, determinism, sharding, clear errors."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import data


def test_synthetic_training_batches():
    ds = data.train_dataset("synthetic", 32, 8, seed=3)
    batch = next(iter(ds))
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == tf.float32
    values = batch["image"].numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0
    again = next(iter(data.train_dataset("synthetic", 32, 8, seed=3)))
    np.testing.assert_array_equal(values, again["image"].numpy())
    other = next(iter(data.train_dataset("synthetic", 32, 8, seed=4)))
    assert not np.array_equal(values, other["image"].numpy())


def test_synthetic_instance_ids_match_the_pixels():
    batch = next(iter(data.eval_dataset("synthetic", 16, 6)))
    images, ids = batch["image"].numpy(), batch["instance_ids"].numpy()
    assert ids.shape == (6, 16, 16)
    for image, id_map in zip(images, ids, strict=True):
        for k in np.unique(id_map):
            colours = image[id_map == k]
            assert np.allclose(colours, colours[0])  # one flat colour per instance


def test_per_replica_batches_with_an_input_context():
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batch = next(iter(data.train_dataset("synthetic", 32, 8, seed=1, input_context=context)))
    assert batch["image"].shape == (4, 32, 32, 3)


def test_resizing_and_uint8_conversion():
    images = tf.constant(np.full((2, 64, 64, 3), 255, np.uint8))
    out = data.to_float_images(images, 32)
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-6)


def test_unknown_dataset_and_unprepared_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.train_dataset("mnist", 32, 4)
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.train_dataset("multi_dsprites/offline_colored", 64, 4, data_dir=str(tmp_path))
    assert ("python -m genesis_tf.build_dataset build tfds_builders/multi_dsprites "
            f"--config=offline_colored --data_dir={tmp_path}") in str(error.value)


# A fresh process's first build of the demo's dataset (shrunk to 16/8/8 examples), then
# TFDS's own is_prepared() on a dataset not built, to show that its warning would be seen.
_FIRST_BUILD_SCRIPT = """
import sys
import tensorflow_datasets as tfds
from genesis_tf import data
from tfds_builders.multi_dsprites import multi_dsprites_dataset_builder as builder_lib
builder_lib.SPLIT_SIZES.update(train=16, validation=8, test=8)
try:
    data.check_available("multi_dsprites/offline_colored", data_dir=sys.argv[1])
except data.DatasetNotPreparedError:
    print("NOT PREPARED YET", flush=True)
data.prepare("multi_dsprites/offline_colored", data_dir=sys.argv[1])
data.check_available("multi_dsprites/offline_colored", data_dir=sys.argv[1])
print("PREPARED", flush=True)
print("TFDS ITSELF:", file=sys.stderr, flush=True)
print(tfds.builder("multi_dsprites/colored", data_dir=sys.argv[1]).is_prepared())
"""


def test_the_first_build_prints_no_tfds_warning(tmp_path):
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _FIRST_BUILD_SCRIPT, str(tmp_path / "tfds")], cwd=root,
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "NOT PREPARED YET" in result.stdout and "\nPREPARED\nFalse" in result.stdout
    ours, tfds_own = result.stderr.split("TFDS ITSELF:")
    assert "Variant folder" not in ours + result.stdout, ours[-3000:]
    assert "has no dataset_info.json" in tfds_own  # where the warning would show


@pytest.fixture(scope="module")
def tiny_multi_dsprites(tmp_path_factory):
    """The offline Multi-dSprites with 16/8/8 examples, built through genesis_tf.data.prepare."""
    from tfds_builders.multi_dsprites import multi_dsprites_dataset_builder as builder_lib

    saved = dict(builder_lib.SPLIT_SIZES)
    builder_lib.SPLIT_SIZES.update(train=16, validation=8, test=8)
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    try:
        data.prepare("multi_dsprites/offline_colored", data_dir=data_dir)
    finally:
        builder_lib.SPLIT_SIZES.update(saved)
    return data_dir


def test_tfds_training_pipeline(tiny_multi_dsprites):
    ds = data.train_dataset("multi_dsprites/offline_colored", 32, 4, seed=0,
                            data_dir=tiny_multi_dsprites)
    batches = [b["image"].numpy() for b in ds.take(6)]  # repeats past the 16 examples
    assert all(b.shape == (4, 32, 32, 3) for b in batches)
    again = [b["image"].numpy() for b in data.train_dataset(
        "multi_dsprites/offline_colored", 32, 4, seed=0, data_dir=tiny_multi_dsprites).take(6)]
    for a, b in zip(batches, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_tfds_eval_pipeline_has_instance_ids_and_labels(tiny_multi_dsprites):
    batches = list(data.eval_dataset("multi_dsprites/offline_colored", 64, 5, split="test",
                                     data_dir=tiny_multi_dsprites))
    assert [int(b["image"].shape[0]) for b in batches] == [5, 3]  # no drop_remainder
    first = batches[0]
    assert first["instance_ids"].shape == (5, 64, 64)
    assert first["instance_ids"].dtype == tf.int32
    ids = first["instance_ids"].numpy()
    assert ids.max() <= 4 and np.all(first["num_objects"].numpy() >= ids.max(axis=(1, 2)))


def test_shapestacks_is_centre_cropped_like_the_reference():
    image = np.zeros((1, 224, 224, 3), np.uint8)
    image[:, 14:210, 14:210] = 255  # the central 196x196 square
    out = data.to_float_images(tf.constant(image), 64, data.CENTRE_CROP["shapestacks"])
    np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-6)


def test_downsampled_instance_ids_label_each_pixel_by_its_colour():
    """At 64 -> 32 every pixel of a one-sprite scene is labelled by the entity its resized
    colour is nearer to (nearest-neighbour ids were half a source pixel off)."""
    from tfds_builders.multi_dsprites import sprites

    rng = np.random.default_rng(0)
    latents = sprites.sample_latents(rng, 12)
    masks = sprites.render(latents["shape"], sprites.SCALES[latents["scale"]],
                           sprites.ORIENTATIONS[latents["orientation"]],
                           sprites.POSITIONS[latents["x"]], sprites.POSITIONS[latents["y"]])
    background, colour = np.array([0.0, 0.25, 1.0]), np.array([1.0, 0.75, 0.0])
    for mask in masks:
        image, ids = sprites.compose(mask[None], colour[None], background)
        small = data.to_float_images(tf.constant(sprites.to_uint8(image)), 32).numpy()
        labels = data.resize_instance_ids(tf.constant(ids[..., None]), 32).numpy()
        assert labels.shape == (32, 32) and labels.dtype == np.int32
        nearer_sprite = (np.linalg.norm(small - colour, axis=-1)
                         < np.linalg.norm(small - background, axis=-1))
        np.testing.assert_array_equal(labels, nearer_sprite.astype(np.int32))
    same_size = data.resize_instance_ids(tf.constant(ids[..., None]), 64).numpy()
    np.testing.assert_array_equal(same_size, ids)

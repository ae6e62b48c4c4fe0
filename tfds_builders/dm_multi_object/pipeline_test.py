"""genesis_tf.data with the multi-object-datasets builders (built from dummy_data/): names
are known, CLEVR gets MONet's crop before the resize, one-channel images become RGB, the
mask stack is not decoded."""
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from genesis_tf import data
from tfds_builders.clevr_with_masks import clevr_with_masks_dataset_builder as clevr
from tfds_builders.dm_multi_dsprites import dm_multi_dsprites_dataset_builder as dsprites
from tfds_builders.dm_multi_object import testing
from tfds_builders.objects_room import objects_room_dataset_builder as objects_room

BUILDERS = pathlib.Path(testing.__file__).parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfds")
    saved = {cls: dict(cls.SPLIT_RECORDS)
             for cls in (clevr.Builder, dsprites.Builder, objects_room.Builder)}
    for cls in saved:
        cls.SPLIT_RECORDS.update(testing.SMALL_SPLIT_RECORDS)
    try:
        for name, cls, folder_name in (
                ("clevr_with_masks", clevr.Builder, "clevr_with_masks"),
                ("binarized", dsprites.Builder, "dm_multi_dsprites"),
                ("train", objects_room.Builder, "objects_room")):
            kwargs = {} if name == folder_name else {"config": name}
            cls(data_dir=str(folder), **kwargs).download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=str(BUILDERS / folder_name / "dummy_data"),
                    compute_stats=tfds.download.ComputeStatsMode.SKIP))
    finally:
        for cls, sizes in saved.items():
            cls.SPLIT_RECORDS.update(sizes)
    return str(folder)


def test_clevr_is_cropped_like_monet_then_resized(data_dir):
    batch = next(iter(data.eval_dataset("clevr_with_masks", 128, 4, split="test",
                                        data_dir=data_dir)))
    assert batch["image"].shape == (1, 128, 128, 3)
    assert batch["instance_ids"].shape == (1, 128, 128)
    raw = next(iter(tfds.as_numpy(tfds.builder("clevr_with_masks", data_dir=data_dir)
                                  .as_dataset(split="test"))))
    window = raw["image"][29:221, 64:256].astype(np.float32) / 255.0
    expected = tf.image.resize(window, [128, 128], antialias=True).numpy()
    np.testing.assert_allclose(batch["image"][0], np.clip(expected, 0, 1), atol=1e-5)
    ids = raw["instance_ids"][29:221, 64:256]
    np.testing.assert_array_equal(
        batch["instance_ids"][0],
        data.resize_instance_ids(tf.constant(ids), 128).numpy())
    assert "mask" not in batch


def test_training_batches_for_each_dataset(data_dir):
    for name, size in (("clevr_with_masks", 128), ("dm_multi_dsprites/binarized", 64),
                       ("objects_room/train", 64), ("objects_room", 64)):
        data.check_available(name, data_dir)
        batch = next(iter(data.train_dataset(name, size, 2, data_dir=data_dir, seed=0)))
        assert set(batch) == {"image"}
        assert batch["image"].shape == (2, size, size, 3) and batch["image"].dtype == tf.float32
    assert data.dataset_crop("clevr_with_masks") == (29, 64, 192, 192)
    assert data.dataset_crop("objects_room/train") is None


def test_unbuilt_dataset_prints_its_build_command(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError,
                       match="build tfds_builders/objects_room --config=six_objects"):
        data.check_available("objects_room/six_objects", str(tmp_path))

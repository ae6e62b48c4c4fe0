"""TFDS builder test for dm_multi_dsprites on dummy_data/ (GZIP TFRecords in the real
layout of DeepMind's three files)."""
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders.dm_multi_dsprites import dm_multi_dsprites_dataset_builder as lib
from tfds_builders.dm_multi_object import testing

DUMMY = pathlib.Path(__file__).parent / "dummy_data"


class DmMultiDspritesTest(testing.SmallSplits, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["colored_on_colored", "colored_on_grayscale",
                                    "binarized"]
    SPLITS = testing.SMALL_SPLITS
    SKIP_CHECKSUMS = True  # nothing goes through the download manager


def test_masks_are_transposed_from_the_stored_hwk_layout():
    """The file stores mask [64, 64, K, 1]; the example holds [K, 64, 64, 1]."""
    path = DUMMY / "multi_dsprites_binarized.tfrecords"
    raw = next(iter(tf.data.TFRecordDataset(str(path), compression_type="GZIP")))
    parsed = tf.io.parse_single_example(raw, {
        "image": tf.io.FixedLenFeature([64, 64, 1], tf.string),
        "mask": tf.io.FixedLenFeature([64, 64, 4, 1], tf.string),
        "color": tf.io.FixedLenFeature([4, 1], tf.float32)})
    stored = tf.squeeze(tf.io.decode_raw(parsed["mask"], tf.uint8), -1).numpy()
    builder = lib.Builder(config="binarized", data_dir="/nonexistent")
    _, example = next(builder._generate_examples(str(path), 0, None))
    np.testing.assert_array_equal(example["mask"], np.transpose(stored, (2, 0, 1, 3)))
    assert example["image"].shape == (64, 64, 1) and example["color"].shape == (4, 1)
    np.testing.assert_array_equal(example["color"], parsed["color"].numpy())

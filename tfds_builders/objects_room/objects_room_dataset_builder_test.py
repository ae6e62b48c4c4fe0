"""TFDS builder tests for objects_room on dummy_data/ (GZIP TFRecords in the real layout)."""
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.dm_multi_object import records, testing
from tfds_builders.objects_room import objects_room_dataset_builder as lib

DUMMY = pathlib.Path(__file__).parent / "dummy_data"


class ObjectsRoomTrainTest(testing.SmallSplits, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["train"]
    SPLITS = testing.SMALL_SPLITS
    SKIP_CHECKSUMS = True  # nothing goes through the download manager


class ObjectsRoomTestVariantsTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["empty_room", "six_objects", "identical_color"]
    SPLITS = {"test": 2}
    SKIP_CHECKSUMS = True


def test_room_parts_are_background_and_objects_count_from_one():
    builder = lib.Builder(config="six_objects", data_dir="/nonexistent")
    path = str(DUMMY / "objects_room_test_six_objects.tfrecords")
    (key, example), _ = list(builder._generate_examples(path, 0, None))
    assert key == "objects_room_test_six_objects.tfrecords:0"
    mask, ids = example["mask"], example["instance_ids"][..., 0]
    assert mask.shape == (10, 64, 64, 1) and example["image"].shape == (64, 64, 3)
    for k in range(10):
        covered = mask[k, ..., 0] > 0
        assert (ids[covered] == max(k - 3, 0)).all()  # sky, floor, walls -> 0
    assert set(np.unique(ids)) - {0} <= set(range(1, 7))
    assert records.instance_ids(mask, 4).max() == ids.max()

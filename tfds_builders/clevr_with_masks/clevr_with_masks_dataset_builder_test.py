"""TFDS builder test for clevr_with_masks on dummy_data/ (a GZIP TFRecord in the real
layout)."""
import tensorflow_datasets as tfds

from tfds_builders.clevr_with_masks import clevr_with_masks_dataset_builder as lib
from tfds_builders.dm_multi_object import testing


class ClevrWithMasksTest(testing.SmallSplits, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    SPLITS = testing.SMALL_SPLITS
    SKIP_CHECKSUMS = True  # nothing goes through the download manager

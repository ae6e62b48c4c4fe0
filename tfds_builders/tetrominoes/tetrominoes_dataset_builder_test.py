"""TFDS builder test for tetrominoes on dummy_data/ (a GZIP TFRecord in the real layout)."""
import tensorflow_datasets as tfds

from tfds_builders.dm_multi_object import testing
from tfds_builders.tetrominoes import tetrominoes_dataset_builder as lib


class TetrominoesTest(testing.SmallSplits, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    SPLITS = testing.SMALL_SPLITS
    SKIP_CHECKSUMS = True  # nothing goes through the download manager

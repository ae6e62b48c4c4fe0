"""Tetrominoes (DeepMind multi-object-datasets, IODINE) as a TFDS dataset.

Source: ``gs://multi-object-datasets/tetrominoes/tetrominoes_train.tfrecords``, one file.
Records hold ``image`` uint8 [35, 35, 3], ``mask`` uint8 [4, 35, 35, 1] (mask 0 is the
background; three tetrominoes from 17 shapes/orientations and 6 colours) and per entity
float32 ``x``, ``y``, ``shape``, ``visibility`` and ``color`` [3].

Splits by record index: test = records 0–9,999, validation = 10,000–19,999, train = the
rest. See tfds_builders/dm_multi_object/records.py.
"""
import tensorflow_datasets as tfds

from tfds_builders.dm_multi_object import records

LAYOUT = records.Layout(
    image_size=(35, 35),
    attributes={
        "x": ((), "float32"),
        "y": ((), "float32"),
        "shape": ((), "float32"),
        "color": ((3,), "float32"),
        "visibility": ((), "float32"),
    },
)


class Builder(records.MultiObjectBuilder, tfds.core.GeneratorBasedBuilder):
    """Tetrominoes scenes with masks and factors."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    FOLDER = "tetrominoes"
    LAYOUT = LAYOUT
    SPLIT_RECORDS = {"test": 10_000, "validation": 10_000}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Copy gs://multi-object-datasets/tetrominoes/tetrominoes_train.tfrecords into the "
        "manual_dir (`gsutil cp <that URL> <manual_dir>/`). Without it the builder reads "
        "the bucket directly."
    )
    BUILDER_CONFIGS = [
        records.FileConfig(name="full", file="tetrominoes_train.tfrecords",
                           max_num_entities=4,
                           description="The whole file, validation and test carved by "
                                       "record index."),
    ]
    DEFAULT_CONFIG_NAME = "full"

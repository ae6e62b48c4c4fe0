"""CLEVR with masks (DeepMind multi-object-datasets; MONet §3) as a TFDS dataset.

Source: ``gs://multi-object-datasets/clevr_with_masks/clevr_with_masks_train.tfrecords``,
one file. Records hold ``image`` uint8 [240, 320, 3], ``mask`` uint8 [11, 240, 320, 1]
(mask 0 is the background), and per entity (11): ``x``, ``y``, ``z``, ``rotation``,
``visibility`` float32, ``pixel_coords`` float32 [3], and the integer codes ``size``,
``material``, ``shape``, ``color`` (stored as one byte each, uint8 here; 0 for absent
entities).

Splits by record index: test = records 0–4,999, validation = 5,000–9,999, train = the
rest. The images are stored at full size; the input pipeline (genesis_tf.data) crops
MONet's window (y 29–221, x 64–256) and resizes. See tfds_builders/dm_multi_object.
"""
import tensorflow_datasets as tfds

from tfds_builders.dm_multi_object import records

NUM_ENTITIES = 11
LAYOUT = records.Layout(
    image_size=(240, 320),
    attributes={
        "x": ((), "float32"),
        "y": ((), "float32"),
        "z": ((), "float32"),
        "pixel_coords": ((3,), "float32"),
        "rotation": ((), "float32"),
        "size": ((), "uint8"),
        "material": ((), "uint8"),
        "shape": ((), "uint8"),
        "color": ((), "uint8"),
        "visibility": ((), "float32"),
    },
)


class Builder(records.MultiObjectBuilder, tfds.core.GeneratorBasedBuilder):
    """CLEVR scenes (3–10 objects) with masks and the CLEVR generative factors."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    FOLDER = "clevr_with_masks"
    LAYOUT = LAYOUT
    SPLIT_RECORDS = {"test": 5_000, "validation": 5_000}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Copy gs://multi-object-datasets/clevr_with_masks/clevr_with_masks_train.tfrecords "
        "into the manual_dir (`gsutil cp <that URL> <manual_dir>/`). Without it the "
        "builder reads the bucket directly."
    )
    BUILDER_CONFIGS = [
        records.FileConfig(name="full", file="clevr_with_masks_train.tfrecords",
                           max_num_entities=NUM_ENTITIES,
                           description="The whole file, validation and test carved by "
                                       "record index."),
    ]
    DEFAULT_CONFIG_NAME = "full"

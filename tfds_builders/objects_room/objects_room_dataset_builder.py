"""Objects Room (DeepMind multi-object-datasets; MONet §3, GENESIS-v2) as a TFDS dataset.

Source: ``gs://multi-object-datasets/objects_room/``: ``objects_room_train.tfrecords``
(1M scenes with up to three objects) and ~1K-scene test variants
``objects_room_test_{empty_room,six_objects,identical_color}.tfrecords``. Records hold
``image`` uint8 [64, 64, 3] and ``mask`` uint8 [K, 64, 64, 1] (K = 7 for train, 4 for
empty_room, 10 for six_objects and identical_color); the first four masks are the sky,
the floor and the two halves of the wall, the others the objects. No per-object
attributes.

Configs: ``train`` (default; splits test = records 0–9,999, validation = 10,000–19,999,
train = the rest) and one config per test variant (split ``test`` only). See
tfds_builders/dm_multi_object/records.py for the features and the reading.
"""
import tensorflow_datasets as tfds

from tfds_builders.dm_multi_object import records

LAYOUT = records.Layout(image_size=(64, 64), attributes={}, num_background_masks=4)


class Builder(records.MultiObjectBuilder, tfds.core.GeneratorBasedBuilder):
    """Objects Room scenes with their masks; instance ids 0 = sky, floor and walls."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    FOLDER = "objects_room"
    LAYOUT = LAYOUT
    SPLIT_RECORDS = {"test": 10_000, "validation": 10_000}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Copy the config's file from gs://multi-object-datasets/objects_room/ into the "
        "manual_dir, e.g. `gsutil -m cp -r gs://multi-object-datasets/objects_room "
        "<manual_dir>/` (all four files) or `gsutil cp "
        "gs://multi-object-datasets/objects_room/objects_room_train.tfrecords <manual_dir>/`."
        " Without it the builder reads the bucket directly."
    )
    BUILDER_CONFIGS = [
        records.FileConfig(name="train", file="objects_room_train.tfrecords",
                           max_num_entities=7,
                           description="The 1M training scenes (up to 3 objects), "
                                       "with validation and test carved by record index."),
        records.FileConfig(name="empty_room", file="objects_room_test_empty_room.tfrecords",
                           max_num_entities=4, test_file=True,
                           description="Test variant: sky, walls and floor only."),
        records.FileConfig(name="six_objects",
                           file="objects_room_test_six_objects.tfrecords",
                           max_num_entities=10, test_file=True,
                           description="Test variant: exactly 6 visible objects."),
        records.FileConfig(name="identical_color",
                           file="objects_room_test_identical_color.tfrecords",
                           max_num_entities=10, test_file=True,
                           description="Test variant: 4–6 objects of one colour."),
    ]
    DEFAULT_CONFIG_NAME = "train"

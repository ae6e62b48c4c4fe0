"""Writes dummy_data/: tiny GZIP TFRecords in the real Objects Room layout (run once; the
output is committed). The train file has 4 scenes (record 0 -> test, 1 -> validation,
2-3 -> train with the test's SPLIT_RECORDS of 1 each), each test variant 2 scenes."""
import os

from tfds_builders.dm_multi_object import records
from tfds_builders.objects_room import objects_room_dataset_builder as lib

HERE = os.path.dirname(os.path.abspath(__file__))
# config -> (object counts per record, seed, palette of channel values)
SCENES = {
    "train": ([1, 2, 3, 2], 0, [40, 120, 200]),
    "empty_room": ([0, 0], 1, [60, 90]),
    "six_objects": ([6, 6], 2, [30, 150, 250]),
    "identical_color": ([4, 5], 3, [20, 220]),
}


def main():
    for config in lib.Builder.BUILDER_CONFIGS:
        counts, seed, palette = SCENES[config.name]
        records.write_dummy_file(os.path.join(HERE, "dummy_data", config.file), lib.LAYOUT,
                                 config.max_num_entities, config.channels, counts, seed,
                                 palette)


if __name__ == "__main__":
    main()

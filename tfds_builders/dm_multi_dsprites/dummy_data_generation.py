"""Writes dummy_data/: tiny GZIP TFRecords in the real layout of DeepMind's three
Multi-dSprites files (run once; the output is committed): 4 scenes each (record 0 -> test,
1 -> validation, 2-3 -> train with the test's SPLIT_RECORDS of 1 each)."""
import os

from tfds_builders.dm_multi_dsprites import dm_multi_dsprites_dataset_builder as lib
from tfds_builders.dm_multi_object import records

HERE = os.path.dirname(os.path.abspath(__file__))
# config -> (object counts per record, seed, palette)
SCENES = {
    "colored_on_colored": ([1, 2, 4, 3], 0, [0, 63, 127, 191, 255]),
    "colored_on_grayscale": ([2, 5, 3, 4], 1, [30, 100, 170, 240]),
    "binarized": ([2, 3, 2, 3], 2, [255]),
}


def main():
    for config in lib.Builder.BUILDER_CONFIGS:
        counts, seed, palette = SCENES[config.name]
        records.write_dummy_file(os.path.join(HERE, "dummy_data", config.file),
                                 lib.layout(config.channels), config.max_num_entities,
                                 config.channels, counts, seed, palette)


if __name__ == "__main__":
    main()

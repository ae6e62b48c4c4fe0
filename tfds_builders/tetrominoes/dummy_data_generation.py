"""Writes dummy_data/: a tiny GZIP TFRecord in the real Tetrominoes layout (run once; the
output is committed): 4 scenes of 3 pieces (record 0 -> test, 1 -> validation, 2-3 ->
train with the test's SPLIT_RECORDS of 1 each)."""
import os

from tfds_builders.dm_multi_object import records
from tfds_builders.tetrominoes import tetrominoes_dataset_builder as lib

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    config = lib.Builder.BUILDER_CONFIGS[0]
    records.write_dummy_file(os.path.join(HERE, "dummy_data", config.file), lib.LAYOUT,
                             config.max_num_entities, config.channels, [3, 3, 3, 3], 0,
                             [0, 255])


if __name__ == "__main__":
    main()

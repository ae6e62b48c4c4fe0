"""Writes dummy_data/: a tiny GZIP TFRecord in the real CLEVR-with-masks layout (run once;
the output is committed): 4 scenes (record 0 -> test, 1 -> validation, 2-3 -> train with
the test's SPLIT_RECORDS of 1 each), flat colours so that the file stays small."""
import os

from tfds_builders.clevr_with_masks import clevr_with_masks_dataset_builder as lib
from tfds_builders.dm_multi_object import records

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    config = lib.Builder.BUILDER_CONFIGS[0]
    records.write_dummy_file(os.path.join(HERE, "dummy_data", config.file), lib.LAYOUT,
                             config.max_num_entities, config.channels, [3, 4, 3, 5], 0,
                             [64, 128, 192])


if __name__ == "__main__":
    main()

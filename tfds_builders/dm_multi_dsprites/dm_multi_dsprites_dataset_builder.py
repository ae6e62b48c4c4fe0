"""DeepMind's Multi-dSprites files (multi-object-datasets; MONet §3) as a TFDS dataset.

Not the ``multi_dsprites`` builder of this project (which renders GENESIS's variant from
the dSprites archive): these are the 1M-scene files MONet and IODINE use, from
``gs://multi-object-datasets/multi_dsprites/multi_dsprites_<config>.tfrecords``:

| config | scenes | K | image |
|---|---|---|---|
| ``colored_on_colored`` (default) | 1–4 sprites, RGB background | 5 | [64, 64, 3] |
| ``colored_on_grayscale`` | 2–5 HSV-coloured sprites, grey background | 6 | [64, 64, 3] |
| ``binarized`` | 2–3 white sprites on black | 4 | [64, 64, 1] |

Records hold ``image`` uint8, ``mask`` uint8 stored as [64, 64, K, 1] (transposed here to
[K, 64, 64, 1]; mask 0 is the background) and per entity float32 ``x``, ``y``, ``shape``,
``orientation``, ``scale``, ``visibility`` and ``color`` [3] ([1] for ``binarized``).

Splits by record index: test = records 0–9,999, validation = 10,000–19,999, train = the
rest. See tfds_builders/dm_multi_object/records.py.
"""
import tensorflow_datasets as tfds

from tfds_builders.dm_multi_object import records


def layout(channels):
    return records.Layout(
        image_size=(64, 64),
        attributes={
            "x": ((), "float32"),
            "y": ((), "float32"),
            "shape": ((), "float32"),
            "color": ((channels,), "float32"),
            "visibility": ((), "float32"),
            "orientation": ((), "float32"),
            "scale": ((), "float32"),
        },
        masks_last=True,
    )


class Builder(records.MultiObjectBuilder, tfds.core.GeneratorBasedBuilder):
    """Multi-dSprites scenes as DeepMind published them, with masks and factors."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    FOLDER = "multi_dsprites"
    SPLIT_RECORDS = {"test": 10_000, "validation": 10_000}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Copy the config's file, gs://multi-object-datasets/multi_dsprites/"
        "multi_dsprites_<config>.tfrecords, into the manual_dir (`gsutil cp <that URL> "
        "<manual_dir>/`). Without it the builder reads the bucket directly."
    )
    BUILDER_CONFIGS = [
        records.FileConfig(name="colored_on_colored",
                           file="multi_dsprites_colored_on_colored.tfrecords",
                           max_num_entities=5,
                           description="1–4 sprites, all colours random RGB."),
        records.FileConfig(name="colored_on_grayscale",
                           file="multi_dsprites_colored_on_grayscale.tfrecords",
                           max_num_entities=6,
                           description="2–5 HSV-coloured sprites on a grey background."),
        records.FileConfig(name="binarized", file="multi_dsprites_binarized.tfrecords",
                           max_num_entities=4, channels=1,
                           description="2–3 white sprites on black, one channel."),
    ]
    DEFAULT_CONFIG_NAME = "colored_on_colored"

    @property
    def LAYOUT(self):  # noqa: N802  (the other builders' class attribute)
        return layout(self.builder_config.channels)

"""TFDS builder test for multi_dsprites on dummy_data/ (a 24-row archive in the real format)."""
import socket

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import downloads
from tfds_builders.multi_dsprites import multi_dsprites_dataset_builder as builder_lib
from tfds_builders.multi_dsprites import sprites

_SMALL_SPLITS = {"train": 6, "validation": 3, "test": 4}


class _SmallSplits:
    """Builds 6/3/4 examples instead of 50,000/10,000/10,000."""

    @classmethod
    def setUpClass(cls):
        cls._saved_sizes = dict(builder_lib.SPLIT_SIZES)
        builder_lib.SPLIT_SIZES.update(_SMALL_SPLITS)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        builder_lib.SPLIT_SIZES.update(cls._saved_sizes)
        super().tearDownClass()


class MultiDspritesArchiveTest(_SmallSplits, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["colored", "colored_unique"]
    SPLITS = _SMALL_SPLITS
    DL_EXTRACT_RESULT = {"dsprites": builder_lib.DSPRITES_FILE}
    # The archive is checked by MD5 in the builder; its SHA-256 is not registered yet.
    SKIP_CHECKSUMS = True


class MultiDspritesOfflineTest(_SmallSplits, tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["offline_colored", "offline_colored_unique"]
    SPLITS = _SMALL_SPLITS
    SKIP_CHECKSUMS = True


def _examples(config, split="train", count=200):
    builder = builder_lib.Builder(config=config, data_dir="/nonexistent")
    gen = builder._generate_examples(split, None)
    return [next(gen) for _ in range(count)]


def test_instance_masks_match_the_painted_pixels():
    for _, ex in _examples("offline_colored"):
        image = ex["image"].astype(np.float64) / 255.0
        ids = ex["instance_ids"][..., 0]
        colours = np.concatenate([ex["background_color"][None], ex["objects"]["color"]])
        assert ex["num_objects"] == len(ex["objects"]["color"]) and 1 <= ex["num_objects"] <= 4
        # Every pixel shows the colour of the instance the mask assigns to it.
        np.testing.assert_allclose(image, colours[ids], atol=1 / 255)
        # Re-rendering the recorded latents in paint order gives the same instance map.
        objects = ex["objects"]
        masks = sprites.render(objects["shape"], objects["scale"], objects["orientation"],
                               objects["x"], objects["y"])
        _, expected_ids = sprites.compose(masks, objects["color"], ex["background_color"])
        np.testing.assert_array_equal(ids, expected_ids)


def test_colours_use_five_levels_and_unique_config_has_distinct_colours():
    for config, unique in (("offline_colored", False), ("offline_colored_unique", True)):
        repeats = 0
        for _, ex in _examples(config):
            colours = np.concatenate([ex["background_color"][None], ex["objects"]["color"]])
            assert set(np.round(colours * 4, 6).ravel()) <= {0, 1, 2, 3, 4}
            repeats += len(np.unique(colours, axis=0)) < len(colours)
        assert (repeats == 0) if unique else (repeats > 0)


def test_building_is_deterministic_and_splits_differ():
    a, b = _examples("offline_colored", count=5), _examples("offline_colored", count=5)
    for (ka, ea), (kb, eb) in zip(a, b, strict=True):
        assert ka == kb
        np.testing.assert_array_equal(ea["image"], eb["image"])
    test = _examples("offline_colored", split="test", count=5)
    assert not all(np.array_equal(x[1]["image"], y[1]["image"]) for x, y in zip(a, test,
                                                                                strict=True))


def test_a_missing_archive_after_the_probe_names_the_file_and_the_fix(tmp_path, monkeypatch):
    # The host answers the reachability probe, then the download itself fails.
    monkeypatch.setattr(downloads, "_create_connection", lambda *a, **k: socket.socket())
    builder = builder_lib.Builder(config="colored", data_dir=str(tmp_path))

    class NoNetwork:
        manual_dir = str(tmp_path / "manual")

        def download(self, urls):
            raise ConnectionError("network unreachable")

    try:
        builder._archive_path(NoNetwork())
    except RuntimeError as error:
        message = str(error)
    else:
        raise AssertionError("expected a RuntimeError")
    assert builder_lib.DSPRITES_FILE in message and "--manual_dir" in message
    assert "ConnectionError: network unreachable" in message


def test_a_corrupt_archive_names_the_file(tmp_path):
    bad = tmp_path / builder_lib.DSPRITES_FILE
    bad.write_bytes(b"not an npz")
    try:
        builder_lib._ArchiveSprites(str(bad))
    except RuntimeError as error:
        assert str(bad) in str(error)
    else:
        raise AssertionError("expected a RuntimeError")

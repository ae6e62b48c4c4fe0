"""TFDS builder test for shapestacks on dummy_data/ (the real archive layout and names)."""
import io
import socket
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import downloads
from tfds_builders.shapestacks import shapestacks_dataset_builder as lib


class ShapeStacksTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    # Two views per scenario: 2 train, 1 eval, 1 test scenario in the split lists.
    SPLITS = {"train": 4, "validation": 2, "test": 2}
    DL_EXTRACT_RESULT = dict(lib.ARCHIVES)
    SKIP_CHECKSUMS = True  # the archives' checksums are not registered (see checksums.tsv)


def test_scenario_names_give_height_and_stability():
    assert lib.parse_scenario("env_ccs-hard-h=2-vcom=0-vpsf=0-v=60") == (2, True)
    assert lib.parse_scenario("env_blocks-easy-h=4-vcom=1-vpsf=0-v=3") == (4, False)
    assert lib.parse_scenario("env_ccs-easy-h=6-vcom=0-vpsf=2-v=7") == (6, False)
    assert lib.parse_view("rgb-w=5-f=2-l=1-c=unique-cam_7-mono-0.png") == 7
    with pytest.raises(ValueError, match="not a ShapeStacks scenario"):
        lib.parse_scenario("something-else")


def test_instance_maps_are_first_channel_over_32():
    import tensorflow as tf

    labels = np.array([[0, 1], [2, 6]], np.uint8)
    rgb = np.stack([labels * 32, labels * 0 + 200, labels * 0 + 7], -1).astype(np.uint8)
    data = tf.io.encode_png(rgb).numpy()
    np.testing.assert_array_equal(lib.decode_instance_map(data, "x")[..., 0], labels)
    with pytest.raises(RuntimeError, match="where.map: not a readable instance map"):
        lib.decode_instance_map(b"garbage", "where.map")


def test_examples_join_renders_masks_and_labels():
    builder = lib.Builder(data_dir="/nonexistent")
    import os

    here = os.path.join(os.path.dirname(__file__), "dummy_data")
    paths = {k: os.path.join(here, v) for k, v in lib.ARCHIVES.items()}

    class Manager:
        manual_dir = here

        @staticmethod
        def iter_archive(path):
            with tarfile.open(path) as tar:
                for member in tar:
                    yield member.name, io.BytesIO(tar.extractfile(member).read())

    generators = builder._split_generators(Manager())
    train = list(generators["train"])
    assert len(train) == 4
    for key, example in train:
        height = example["height"]
        assert key.startswith(example["scenario"] + "/rgb-")
        assert example["stable"] == int("vcom=0-vpsf=0" in example["scenario"])
        ids = example["instance_ids"][..., 0]
        assert set(np.unique(ids)) == set(range(height + 1))  # blocks 1..h from the bottom
        # In the dummy renders each block is painted 40 × its label.
        np.testing.assert_array_equal(example["image"][ids > 0, 0], ids[ids > 0] * 40)
    assert paths["rgb"].endswith("shapestacks-rgb.tar.gz")


def test_missing_archives_after_the_probe_say_what_to_put_where(tmp_path, monkeypatch):
    # The host answers the reachability probe, then the download itself fails.
    monkeypatch.setattr(downloads, "_create_connection", lambda *a, **k: socket.socket())
    builder = lib.Builder(data_dir=str(tmp_path))

    class NoNetwork:
        manual_dir = tmp_path

        def download(self, urls):
            raise ConnectionError("network unreachable")

    with pytest.raises(RuntimeError, match="--manual_dir") as error:
        builder._archives(NoNetwork())
    for name in lib.ARCHIVES.values():
        assert name in str(error.value)
    assert "ConnectionError: network unreachable" in str(error.value)

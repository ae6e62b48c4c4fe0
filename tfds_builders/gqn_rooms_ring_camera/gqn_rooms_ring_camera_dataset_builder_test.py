"""TFDS builder test for gqn_rooms_ring_camera on dummy_data/ (real TFRecord format)."""
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders.gqn_rooms_ring_camera import gqn_rooms_ring_camera_dataset_builder as lib

DUMMY = pathlib.Path(__file__).parent / "dummy_data" / "rooms_ring_camera"


class GqnRoomsRingCameraTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["full", "first_files"]
    # 3 train files of 2 scenes x 10 frames: the last file becomes validation.
    SPLITS = {"train": 40, "validation": 20, "test": 20}
    SKIP_CHECKSUMS = True  # nothing is downloaded through the download manager


def _examples(files):
    builder = lib.Builder(config="full", data_dir="/nonexistent")
    return list(builder._generate_examples([str(f) for f in files]))


def test_frames_and_poses_come_from_the_records():
    path = sorted((DUMMY / "train").glob("*.tfrecord"))[0]
    examples = _examples([path])
    assert len(examples) == 20
    record = next(iter(tf.data.TFRecordDataset(str(path))))
    parsed = tf.io.parse_single_example(record, {
        "frames": tf.io.FixedLenFeature([10], tf.string),
        "cameras": tf.io.FixedLenFeature([50], tf.float32)})
    key, first = examples[3]
    assert key == f"{path.name}:0:3" and first["frame_index"] == 3
    np.testing.assert_array_equal(first["image"],
                                  tf.io.decode_jpeg(parsed["frames"][3]).numpy())
    np.testing.assert_allclose(first["camera"], parsed["cameras"].numpy()[15:20])


def test_corrupt_record_names_the_file(tmp_path):
    bad = tmp_path / "0001-of-2160.tfrecord"
    good = sorted((DUMMY / "train").glob("*.tfrecord"))[0].read_bytes()
    bad.write_bytes(good[:100] + b"\x00" * 50 + good[150:])
    with pytest.raises(RuntimeError, match=str(bad)):
        _examples([bad])


def test_corrupt_jpeg_names_the_file(tmp_path):
    bad = tmp_path / "0002-of-2160.tfrecord"
    example = tf.train.Example(features=tf.train.Features(feature={
        "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"nope"] * 10)),
        "cameras": tf.train.Feature(float_list=tf.train.FloatList(value=[0.0] * 50)),
    }))
    with tf.io.TFRecordWriter(str(bad)) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(RuntimeError, match=f"{bad}: record 0, frame 0 is not a valid JPEG"):
        _examples([bad])


def test_missing_source_says_where_to_put_the_files(tmp_path, monkeypatch):
    builder = lib.Builder(config="full", data_dir=str(tmp_path))

    class Manager:
        manual_dir = tmp_path / "manual"

    monkeypatch.setattr(lib, "BUCKET", str(tmp_path / "no_bucket"))
    with pytest.raises(RuntimeError, match="--manual_dir") as error:
        builder._split_generators(Manager())
    assert "rooms_ring_camera/train" in str(error.value)

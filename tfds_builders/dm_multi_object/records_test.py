"""The shared multi-object-datasets reader: decoding against DeepMind's documented layout,
split rule, broken records, and the manual-dir / bucket / offline branches (the network
is faked: the probe's socket function and the bucket path)."""
import pathlib
import shutil
import socket
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import downloads
from tfds_builders.clevr_with_masks import clevr_with_masks_dataset_builder as clevr
from tfds_builders.dm_multi_object import records, testing
from tfds_builders.objects_room import objects_room_dataset_builder as objects_room
from tfds_builders.tetrominoes import tetrominoes_dataset_builder as tetrominoes

BUILDERS = pathlib.Path(records.__file__).parents[1]
CLEVR_FILE = BUILDERS / "clevr_with_masks" / "dummy_data" / "clevr_with_masks_train.tfrecords"
TETRO_FILE = BUILDERS / "tetrominoes" / "dummy_data" / "tetrominoes_train.tfrecords"
ROOM_FILE = BUILDERS / "objects_room" / "dummy_data" / "objects_room_train.tfrecords"


class _Connection:
    def close(self):
        pass


@pytest.fixture
def network_up(monkeypatch):
    tried = []

    def connect(address, timeout=None):
        tried.append(address)
        return _Connection()

    monkeypatch.setattr(downloads, "_create_connection", connect)
    return tried


@pytest.fixture
def network_down(monkeypatch):
    def connect(address, timeout=None):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(downloads, "_create_connection", connect)


@pytest.fixture
def small_splits(monkeypatch):
    for cls in (clevr.Builder, tetrominoes.Builder, objects_room.Builder):
        for split, n in testing.SMALL_SPLIT_RECORDS.items():
            monkeypatch.setitem(cls.SPLIT_RECORDS, split, n)


def _prepare(builder_cls, tmp_path, manual_dir=None, config=None):
    kwargs = {"config": config} if config else {}
    builder = builder_cls(data_dir=str(tmp_path / "data"), **kwargs)
    builder.download_and_prepare(
        download_dir=str(tmp_path / "downloads"),
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir) if manual_dir else None,
            compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return builder


def _counts(builder):
    return {name: info.num_examples for name, info in builder.info.splits.items()}


def _deepmind_decode(raw):
    """CLEVR as DeepMind's reader documents it: fixed-length features, bytes via
    decode_raw (one byte per string), squeezed."""
    k, h, w = 11, 240, 320
    byte_keys = ["image", "mask", "size", "material", "shape", "color"]
    spec = {"image": tf.io.FixedLenFeature([h, w, 3], tf.string),
            "mask": tf.io.FixedLenFeature([k, h, w, 1], tf.string),
            "pixel_coords": tf.io.FixedLenFeature([k, 3], tf.float32)}
    for key in ("x", "y", "z", "rotation", "visibility"):
        spec[key] = tf.io.FixedLenFeature([k], tf.float32)
    for key in ("size", "material", "shape", "color"):
        spec[key] = tf.io.FixedLenFeature([k], tf.string)
    parsed = tf.io.parse_single_example(raw, spec)
    return {key: (tf.squeeze(tf.io.decode_raw(v, tf.uint8), -1) if key in byte_keys else v)
            .numpy() for key, v in parsed.items()}


def test_clevr_examples_match_deepminds_documented_decoding():
    raws = list(tf.data.TFRecordDataset(str(CLEVR_FILE), compression_type="GZIP"))
    assert len(raws) == 4
    builder = clevr.Builder(data_dir="/nonexistent")
    examples = list(builder._generate_examples(str(CLEVR_FILE), 2, None))
    assert [key for key, _ in examples] == [f"{CLEVR_FILE.name}:2", f"{CLEVR_FILE.name}:3"]
    expected = _deepmind_decode(raws[2])
    example = examples[0][1]
    assert set(example) == set(expected) | {"instance_ids"}
    for key, value in expected.items():
        assert example[key].dtype == value.dtype, key
        np.testing.assert_array_equal(example[key], value, err_msg=key)
    assert example["size"].dtype == np.uint8 and example["pixel_coords"].shape == (11, 3)
    ids = example["instance_ids"][..., 0]
    np.testing.assert_array_equal(ids, np.argmax(expected["mask"][..., 0], axis=0))


def test_splits_are_record_ranges(tmp_path, small_splits):
    builder = _prepare(tetrominoes.Builder, tmp_path, TETRO_FILE.parent)
    assert _counts(builder) == testing.SMALL_SPLITS
    images = {split: [ex["image"] for ex in tfds.as_numpy(builder.as_dataset(split=split))]
              for split in ("test", "validation", "train")}
    raws = [_image(r) for r in tf.data.TFRecordDataset(str(TETRO_FILE), "GZIP")]
    np.testing.assert_array_equal(images["test"][0], raws[0])
    np.testing.assert_array_equal(images["validation"][0], raws[1])
    train = sorted(images["train"], key=lambda a: a.tobytes())
    expected = sorted(raws[2:], key=lambda a: a.tobytes())
    for got, want in zip(train, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def _image(raw):
    parsed = tf.io.parse_single_example(
        raw, {"image": tf.io.FixedLenFeature([35, 35, 3], tf.string)})
    return tf.squeeze(tf.io.decode_raw(parsed["image"], tf.uint8), -1).numpy()


def _broken_file(folder, drop=None, shorten=None):
    """tetrominoes_train.tfrecords in `folder`: three good records (test, validation and
    train with the small splits), then a copy without feature `drop` (or with `shorten`
    cut to 5 values) as record 3."""
    layout, spec = tetrominoes.LAYOUT, records.record_spec(tetrominoes.LAYOUT, 4, 3)
    values = records.dummy_scene(np.random.default_rng(0), layout, 4, 3, 3, [0, 255])
    bad = dict(values)
    if drop:
        del bad[drop]
    path = pathlib.Path(folder) / "tetrominoes_train.tfrecords"
    good = records.encode_record(values, spec)
    if shorten:
        example = tf.train.Example.FromString(records.encode_record(bad, spec))
        del example.features.feature[shorten].float_list.value[5:]
        broken = example.SerializeToString()
    else:
        broken = records.encode_record(bad, spec)
    records.write_records(str(path), [good, good, good, broken])
    return path


def test_a_missing_feature_names_the_file_record_and_key(tmp_path):
    path = _broken_file(tmp_path, drop="visibility")
    builder = tetrominoes.Builder(data_dir="/nonexistent")
    with pytest.raises(RuntimeError) as error:
        list(builder._generate_examples(str(path), 0, None))
    assert str(error.value) == f"{path}: record 3 has no feature 'visibility'"


def test_a_missing_mask_fails_the_build_naming_file_and_key(tmp_path, small_splits,
                                                            network_down):
    manual = tmp_path / "manual"
    path = _broken_file(manual, drop="mask")
    with pytest.raises(Exception, match=f"{path}: record 3 has no feature 'mask'"):
        _prepare(tetrominoes.Builder, tmp_path, manual)


def test_a_short_feature_names_the_key(tmp_path):
    path = _broken_file(tmp_path, shorten="color")
    builder = tetrominoes.Builder(data_dir="/nonexistent")
    with pytest.raises(RuntimeError, match=f"{path}: record 3 feature 'color' has 5 float "
                                           r"values, expected 12 \(shape \[4, 3\]\)"):
        list(builder._generate_examples(str(path), 0, None))


def test_a_damaged_file_names_the_file(tmp_path):
    data = TETRO_FILE.read_bytes()
    path = tmp_path / "tetrominoes_train.tfrecords"
    path.write_bytes(data[: len(data) // 2])
    builder = tetrominoes.Builder(data_dir="/nonexistent")
    with pytest.raises(RuntimeError, match=str(path)):
        list(builder._generate_examples(str(path), 0, None))


def test_manual_dir_in_the_buckets_layout_is_used_offline(tmp_path, small_splits,
                                                          network_down):
    manual = tmp_path / "manual"
    (manual / "objects_room").mkdir(parents=True)
    shutil.copyfile(ROOM_FILE, manual / "objects_room" / ROOM_FILE.name)
    builder = _prepare(objects_room.Builder, tmp_path, manual)
    assert _counts(builder) == testing.SMALL_SPLITS


@pytest.mark.parametrize("manual", ["absent", "without_the_file"])
def test_reads_the_bucket_when_manual_lacks_the_file(tmp_path, small_splits, network_up,
                                                     monkeypatch, manual):
    opened = []

    def resolve(url):
        opened.append(url)
        return str(TETRO_FILE)

    monkeypatch.setattr(records, "_resolve", resolve)
    folder = None
    if manual == "without_the_file":
        folder = tmp_path / "manual"
        folder.mkdir()
        (folder / "README.txt").write_text("something else")
    builder = _prepare(tetrominoes.Builder, tmp_path, folder)
    assert opened == ["gs://multi-object-datasets/tetrominoes/tetrominoes_train.tfrecords"]
    assert network_up == [("www.googleapis.com", 443)]
    assert _counts(builder) == testing.SMALL_SPLITS


def test_without_network_fails_fast_naming_bucket_and_manual_dir(tmp_path, network_down):
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError) as error:
        _prepare(clevr.Builder, tmp_path)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "gs://multi-object-datasets/clevr_with_masks/clevr_with_masks_train.tfrecords" \
        in message
    assert "--manual_dir" in message and "gsutil cp" in message and "\n" not in message


def test_a_file_missing_from_the_bucket_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "BUCKET", str(tmp_path / "no_bucket"))
    with pytest.raises(RuntimeError, match="not found.*--manual_dir"):
        _prepare(objects_room.Builder, tmp_path, config="empty_room")


def test_instance_ids_put_background_masks_at_zero():
    mask = np.zeros((5, 2, 3, 1), np.uint8)
    mask[0, 0, :] = 255
    mask[1, 1, :2] = 255
    mask[3, 1, 2] = 255
    np.testing.assert_array_equal(records.instance_ids(mask, 1), [[0, 0, 0], [1, 1, 3]])
    np.testing.assert_array_equal(records.instance_ids(mask, 2), [[0, 0, 0], [0, 0, 2]])

"""TFDS builder test for sketchy on dummy_data/ (metadata.sqlite in the real schema, .tar.bz2
archives and one loose episode file written with sketchy.py's feature list), the reference's
crops recomputed independently, the split rule and the offline download branch."""
import io
import logging
import os
import socket

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import downloads
from tfds_builders.sketchy import sketchy_dataset_builder as lib

DUMMY = os.path.join(os.path.dirname(__file__), "dummy_data")
LOOSE_EPISODE = "10004798903526998927_521387d3-e7c4-4ee3-9d98-263275319582"  # 2 steps
PER_STEP = 2 * 7  # two front cameras × seven crops


class SketchyPaperTest(tfds.testing.DatasetBuilderTestCase):
    """lift_green + stack_green_on_red: 11 of the 12 dummy episodes (rgb30__all is left out);
    sorted, the first is validation, the second test, 9 episodes (10 steps) train."""
    DATASET_CLASS = lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["paper"]
    SPLITS = {"validation": PER_STEP, "test": PER_STEP, "train": 10 * PER_STEP}
    SKIP_CHECKSUMS = True  # archives are selected from metadata.sqlite (see checksums.tsv)


class SketchyManualTest(tfds.testing.DatasetBuilderTestCase):
    """Every episode in --manual_dir without metadata: 12 episodes, 13 steps."""
    DATASET_CLASS = lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["manual"]
    SPLITS = {"validation": PER_STEP, "test": PER_STEP, "train": 11 * PER_STEP}
    SKIP_CHECKSUMS = True


def reference_crops(frame, camera):
    """The GENESIS reference's crops written out with literal indices, resized by PIL."""
    rows = {"front_left": slice(71, 600 - 81), "front_right": slice(91, 600 - 61)}[camera]
    window = frame[rows, 144:960 - 144]  # 448 × 672
    boxes = {"full": (0, 112, 448)}  # (top, left, size)
    for row_name, top in (("top", 0), ("bottom", 448 - 352)):
        for col_name, left in (("left", 0), ("centre", 160), ("right", 672 - 352)):
            boxes[f"{row_name}_{col_name}"] = (top, left, 352)
    out = {}
    for name, (top, left, size) in boxes.items():
        image = Image.fromarray(window[top:top + size, left:left + size])
        out[name] = np.asarray(image.resize((128, 128), Image.BILINEAR))
    return out


@pytest.mark.parametrize("camera", ["front_left", "front_right"])
def test_crops_equal_the_reference_computation(camera):
    frame = np.random.default_rng(1).integers(0, 256, (600, 960, 3)).astype(np.uint8)
    crops = lib.square_crops(lib.crop_frame(frame, camera))
    expected = reference_crops(frame, camera)
    assert list(crops) == list(expected)
    for name, image in crops.items():
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, expected[name], err_msg=name)  # exact
    # The same boxes resized by another implementation of the filter (tf.image bilinear
    # with antialiasing, float output): within 1 grey level (PIL rounds to uint8; measured
    # max 0.91 on this noise frame).
    window = frame[(slice(71, 519) if camera == "front_left" else slice(91, 539)), 144:816]
    boxes = {"full": (0, 112, 448), "top_left": (0, 0, 352), "top_centre": (0, 160, 352),
             "top_right": (0, 320, 352), "bottom_left": (96, 0, 352),
             "bottom_centre": (96, 160, 352), "bottom_right": (96, 320, 352)}
    for name, (top, left, size) in boxes.items():
        other = tf.image.resize(window[top:top + size, left:left + size], (128, 128),
                                antialias=True).numpy()
        assert np.abs(crops[name] - other).max() <= 1.0, name


def test_a_record_gives_fourteen_examples_with_its_proprioception():
    with tf.io.gfile.GFile(os.path.join(DUMMY, LOOSE_EPISODE), "rb") as f:
        records = list(lib.read_records(f, "loose"))
    assert len(records) == 2
    examples = lib.step_examples(records[1], LOOSE_EPISODE, 1, "loose")
    assert len(examples) == PER_STEP
    parsed = tf.train.Example.FromString(records[1]).features.feature
    frame = np.asarray(Image.open(io.BytesIO(
        parsed["pixels/basket_front_right"].bytes_list.value[0])).convert("RGB"))
    expected = reference_crops(frame, "front_right")
    for crop, image in expected.items():
        example = examples[("front_right", crop)]
        np.testing.assert_array_equal(example["image"], image)
        assert example["step"] == 1 and example["episode"] == LOOSE_EPISODE
        np.testing.assert_allclose(example["sawyer_joints_angle"],
                                   parsed["sawyer/joints/angle"].float_list.value)
        assert example["gripper_grasp"].dtype == np.int64


def test_split_rule_sorts_names_and_takes_tenths():
    names = [f"ep{i:02d}" for i in range(29)][::-1]  # 10 % of 29 rounds down to 2
    splits = lib.split_episodes(names)
    assert splits["validation"] == ["ep00", "ep01"]
    assert splits["test"] == ["ep02", "ep03"]
    assert splits["train"] == [f"ep{i:02d}" for i in range(4, 29)]
    few = lib.split_episodes(["b", "a", "c"])
    assert few == {"validation": [], "test": [], "train": ["a", "b", "c"]}


def test_fewer_than_ten_episodes_leave_validation_and_test_out_and_say_so(caplog):
    builder = lib.Builder(config="lift_green", data_dir="/nonexistent")

    class Manager:
        manual_dir = DUMMY

        @staticmethod
        def iter_archive(path):
            import tarfile
            with tarfile.open(path) as tar:
                for member in tar:
                    yield member.name, tar.extractfile(member)

    with caplog.at_level(logging.WARNING):
        generators = builder._split_generators(Manager())
    assert set(generators) == {"train"}  # 7 lift_green episodes
    assert "leaves validation and test empty" in caplog.text
    episodes = {example["episode"] for _, example in generators["train"]}
    assert len(episodes) == 7 and LOOSE_EPISODE in episodes


def test_subsets_select_episodes_by_tag(tmp_path):
    metadata = os.path.join(DUMMY, "metadata.sqlite")
    lift = lib.select_episodes(metadata, lib.SUBSET_TAGS["lift_green"])
    stack = lib.select_episodes(metadata, lib.SUBSET_TAGS["stack_green_on_red"])
    assert len(lift) == 7 and len(stack) == 4 and not set(lift) & set(stack)
    assert lift[LOOSE_EPISODE] == "lift_green__episodes-00003-of-00070.tar.bz2"
    assert set(lib.select_episodes(metadata, lib.SUBSET_TAGS["paper"])) == set(lift) | set(stack)
    with pytest.raises(RuntimeError, match="not Sketchy's metadata.sqlite"):
        lib.select_episodes(str(tmp_path / "absent.sqlite"), ("lift_green__demos",))


@pytest.mark.parametrize("with_metadata", [False, True])
def test_offline_build_fails_fast_naming_the_url_and_manual_dir(tmp_path, monkeypatch,
                                                                 with_metadata):
    """The real download_and_prepare; no network: the probe's DNS lookup fails at once."""
    import time

    def unreachable(address, timeout=None):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def download(self, urls):
        raise AssertionError("the probe must stop the download")

    monkeypatch.setattr(downloads, "_create_connection", unreachable)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    manual = tmp_path / "manual"
    if with_metadata:  # then the archives are what is missing
        manual.mkdir()
        (manual / "metadata.sqlite").write_bytes(
            open(os.path.join(DUMMY, "metadata.sqlite"), "rb").read())
    builder = lib.Builder(config="stack_green_on_red", data_dir=str(tmp_path / "data"))
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError) as error:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual)))
    assert time.monotonic() - start < 10
    message = str(error.value)
    missing = "stack_green_on_red__demos-00000-of-00002.tar.bz2" if with_metadata else \
        "metadata.sqlite"
    assert f"{lib.DATA_URL}/{missing}" in message and "--manual_dir" in message


def test_manual_config_without_a_folder_says_what_to_pass(tmp_path):
    builder = lib.Builder(config="manual", data_dir=str(tmp_path))

    class Empty:
        @property
        def manual_dir(self):
            raise AssertionError("Manual directory does not exist or is empty")

    with pytest.raises(RuntimeError, match="--manual_dir="):
        builder._split_generators(Empty())


def test_download_branch_fetches_metadata_then_only_the_archives_it_names(tmp_path,
                                                                           monkeypatch):
    """The real download_and_prepare with an absent --manual_dir: only the network is
    faked (the probe connects; DownloadManager.download returns copies of dummy files)."""
    import shutil
    import tarfile

    monkeypatch.setattr(downloads, "_create_connection", lambda *a, **k: socket.socket())
    loose_archive = tmp_path / "lift_green__episodes-00003-of-00070.tar.bz2"
    with tarfile.open(loose_archive, "w:bz2") as tar:  # the loose episode, archived
        tar.add(os.path.join(DUMMY, LOOSE_EPISODE), arcname=LOOSE_EPISODE)
    requested = []

    def download(self, urls):
        assert isinstance(self, tfds.download.DownloadManager)
        requested.append(sorted(urls.values()))
        out = {}
        for key, url in urls.items():
            name = url.rsplit("/", 1)[1]
            source = loose_archive if name == loose_archive.name else os.path.join(DUMMY, name)
            (tmp_path / "fetched").mkdir(exist_ok=True)
            out[key] = shutil.copyfile(source, tmp_path / "fetched" / name)
        return out

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    builder = lib.Builder(config="lift_green", data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / "absent")))
    assert requested == [
        [f"{lib.DATA_URL}/metadata.sqlite"],
        [f"{lib.DATA_URL}/lift_green__demos-00000-of-00002.tar.bz2",
         f"{lib.DATA_URL}/lift_green__episodes-00003-of-00070.tar.bz2"],
    ]
    assert set(builder.info.splits) == {"train"}  # 7 episodes: validation and test empty
    assert builder.info.splits["train"].num_examples == 8 * PER_STEP

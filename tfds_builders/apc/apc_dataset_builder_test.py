"""TFDS builder test for apc on dummy_data/training.zip (APC's real layout and names), the
reference's split and crop rules, and the download branches."""
import io
import pathlib
import random
import shutil
import socket
import time
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tfds_builders import downloads
from tfds_builders.apc import apc_dataset_builder as lib

DUMMY_ZIP = pathlib.Path(__file__).parent / "dummy_data" / lib.ARCHIVE
# 11 scenes (13 frames): the split rule gives 1 validation scene, 1 test scene (1 frame
# each) and 9 train scenes (11 frames).
SPLITS = {"train": 11, "validation": 1, "test": 1}


class APCTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = lib.Builder
    SPLITS = SPLITS
    DL_EXTRACT_RESULT = {"zip": lib.ARCHIVE}
    SKIP_CHECKSUMS = True  # training.zip's checksum is not registered (see checksums.tsv)


def test_split_is_the_references_rule():
    # Scene paths as the reference globs them (its data folder in front), given unsorted.
    scenes = [f"{place}/obj_{o}/scene-{s:04d}" for place in ("tote", "shelf")
              for o in range(7) for s in range(3)]
    scenes += [f"shelf/obj_{o}/scene-empty" for o in range(7)]
    random.Random(5).shuffle(scenes)
    prefixed = sorted(f"data/apc/processed/{s}" for s in scenes)
    random.seed(0)
    random.shuffle(prefixed)
    tenth = len(prefixed) // 10  # 49 scenes: 4, not 4.9 rounded to 5
    expected = {"validation": prefixed[:tenth], "test": prefixed[tenth:2 * tenth],
                "train": prefixed[2 * tenth:]}
    random.seed(123)  # the rule must not depend on the generator's state before it
    got = lib.split_scenes(scenes)
    assert {k: [f"data/apc/processed/{s}" for s in v] for k, v in got.items()} == expected
    assert [len(got[k]) for k in ("validation", "test", "train")] == [4, 4, 41]
    assert lib.split_scenes(scenes[:9])["validation"] == []  # < 10 scenes: all train


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_resize_and_crop_equal_pil_and_numpy_on_a_640x480_frame():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    mask = np.where(rng.random((480, 640)) < 0.3, 255, 0).astype(np.uint8)
    mask[0, :] = 254  # not full intensity: background, as the reference's .long()
    image, ids = lib.prepare_frame(_png(frame), _png(mask))
    # Shorter side 480 -> 128, longer 640 -> int(170.67) = 170; centre columns 21:149.
    expected = np.asarray(Image.fromarray(frame).resize((170, 128), Image.BILINEAR))
    np.testing.assert_array_equal(image, expected[:, 21:149])
    small = np.asarray(Image.fromarray(mask).resize((170, 128), Image.NEAREST))[:, 21:149]
    assert ids.shape == (128, 128, 1) and ids.dtype == np.uint8
    np.testing.assert_array_equal(ids[..., 0], (small == 255).astype(np.uint8))
    assert 0 < ids.mean() < 1
    empty_image, empty = lib.prepare_frame(_png(frame))  # scene-empty: no mask file
    assert not empty.any() and np.array_equal(empty_image, image)
    # A portrait frame: the width is the shorter side, rows are cropped (61 -> 30:158).
    tall = np.asarray(Image.fromarray(frame).transpose(Image.Transpose.TRANSPOSE))
    tall_image, _ = lib.prepare_frame(_png(tall))
    expected = np.asarray(Image.fromarray(tall).resize((128, 170), Image.BILINEAR))
    np.testing.assert_array_equal(tall_image, expected[21:149])


def test_examples_carry_scene_object_place_and_empty_masks(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copyfile(DUMMY_ZIP, manual / lib.ARCHIVE)
    builder = _prepare(tmp_path, manual)
    assert _counts(builder) == SPLITS
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    places = {ex["place"].decode() for ex in examples}
    assert places == {"shelf", "tote"}
    for ex in examples:
        mask = ex["mask"][..., 0]
        if ex["scene"] == b"scene-empty":
            assert not mask.any()
        else:  # the dummy object is painted red where its mask is 255
            assert set(np.unique(mask)) == {0, 1}
            assert (ex["image"][mask == 1, 0] > 100).mean() > 0.9
    # genesis_tf.data reads the mask as evaluation's instance ids (0 background, 1 object).
    from genesis_tf import data

    data_dir = str(tmp_path / "data")
    batch = next(iter(data.eval_dataset("apc", 128, 11, split="train", data_dir=data_dir)))
    np.testing.assert_array_equal(batch["instance_ids"].numpy(),
                                  np.stack([ex["mask"][..., 0] for ex in examples]))
    train = next(iter(data.train_dataset("apc", 32, 2, data_dir=data_dir, seed=0)))
    assert train["image"].shape == (2, 32, 32, 3)


def test_a_zip_without_frames_is_named(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / lib.ARCHIVE, "w") as archive:
        archive.writestr("something/else.txt", "x")
    with pytest.raises(RuntimeError, match="no training/<place>/<object>/scene-"):
        _prepare(tmp_path, manual)


# ------------------------------------------------------------------ the download branches


def _prepare(tmp_path, manual_dir=None):
    builder = lib.Builder(data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_dir=str(tmp_path / "downloads"),
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir) if manual_dir else None,
            compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return builder


def _counts(builder):
    return {name: info.num_examples for name, info in builder.info.splits.items()}


def test_downloads_training_zip_when_manual_dir_lacks_it(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "_create_connection", lambda *a, **k: socket.socket())
    calls = []

    def download(self, urls):
        calls.append(dict(urls))
        local = tmp_path / "fetched.zip"
        shutil.copyfile(DUMMY_ZIP, local)
        return {"zip": local}

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    assert _counts(_prepare(tmp_path)) == SPLITS
    assert calls == [{"zip": lib.URL}]


def test_without_network_fails_fast_naming_url_and_manual_dir(tmp_path, monkeypatch):
    def connect(address, timeout=None):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def download(self, urls):
        raise AssertionError(f"download called with {urls}")

    monkeypatch.setattr(downloads, "_create_connection", connect)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError) as error:
        _prepare(tmp_path)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert lib.URL in message and "--manual_dir" in message and lib.ARCHIVE in message
    assert "DNS lookup failed" in message and "\n" not in message

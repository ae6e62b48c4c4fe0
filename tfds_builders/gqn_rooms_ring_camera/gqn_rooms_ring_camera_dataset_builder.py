"""GQN "rooms_ring_camera" (Eslami et al. 2018) as single frames for GENESIS.

Source: the public gqn-dataset bucket, ``rooms_ring_camera/{train,test}/*.tfrecord``
(2,160 train and 240 test files, about 250 GB in all). Each record is one scene with the
features ``frames`` (10 JPEG-encoded 64×64 RGB images) and ``cameras`` (10 × 5 floats:
x, y, z, yaw, pitch). Every frame becomes one example. The validation split is carved
from train deterministically: the last 5% of the sorted train files (at least one when
there are two or more).

The files are read from --manual_dir (laid out as in the bucket) when they are there,
otherwise from the bucket itself (gs:// through tf.io.gfile; needs network access: the
host is probed first so that a machine without network fails in seconds).
Configs: ``full`` (every file) and ``first_files`` (the first 20 train and 4 test files,
for a try-out without the whole download).
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import downloads

BUCKET = "gs://gqn-dataset"
BASEPATH = "rooms_ring_camera"
SEQUENCE_SIZE = 10
FRAME_SIZE = 64
VALIDATION_FRACTION = 0.05


@dataclasses.dataclass
class GqnConfig(tfds.core.BuilderConfig):
    max_train_files: int | None = None
    max_test_files: int | None = None


class Builder(tfds.core.GeneratorBasedBuilder):
    """One example per GQN rooms_ring_camera frame, with its camera pose."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Copy the bucket's folder {BASEPATH}/ (with train/ and test/ holding the "
        f"*.tfrecord files) into the manual_dir, e.g. `gsutil -m cp -r "
        f"{BUCKET}/{BASEPATH} <manual_dir>/`. Without it the builder reads {BUCKET} directly."
    )
    BUILDER_CONFIGS = [
        GqnConfig(name="full", description="All 2,160 train and 240 test files."),
        GqnConfig(name="first_files", max_train_files=20, max_test_files=4,
                  description="The first 20 train and 4 test files only."),
    ]
    DEFAULT_CONFIG_NAME = "full"

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(FRAME_SIZE, FRAME_SIZE, 3)),
                "camera": tfds.features.Tensor(shape=(5,), dtype=np.float32),
                "scene": tfds.features.Text(),
                "frame_index": tfds.features.Scalar(dtype=np.int32),
            }),
            supervised_keys=None,
            homepage="https://github.com/deepmind/gqn-datasets",
        )

    def _split_generators(self, dl_manager):
        root, advice = self._source_root(dl_manager)
        config = self.builder_config
        train = _list_files(root, "train", advice)[: config.max_train_files]
        test = _list_files(root, "test", advice)[: config.max_test_files]
        num_val = int(np.ceil(VALIDATION_FRACTION * len(train))) if len(train) > 1 else 0
        return {
            "train": self._generate_examples(train[: len(train) - num_val]),
            "validation": self._generate_examples(train[len(train) - num_val:]),
            "test": self._generate_examples(test),
        }

    def _source_root(self, dl_manager):
        """(folder, advice): <manual_dir>/rooms_ring_camera if it holds train/, else the bucket.

        The bucket is read through tf.io.gfile, which retries an unreachable host for
        minutes; a fast probe of the host comes first.
        """
        manual = downloads.manual_dir(dl_manager)
        if manual is not None:
            local = os.path.join(manual, BASEPATH)
            if tf.io.gfile.exists(os.path.join(local, "train")):
                return local, ""
        root = f"{BUCKET}/{BASEPATH}"
        advice = _advice(root, downloads.configured_manual_dir(dl_manager))
        if root.startswith("gs://"):
            downloads.check_reachable(root, advice)
        return root, advice

    def _generate_examples(self, files):
        features = {
            "frames": tf.io.FixedLenFeature([SEQUENCE_SIZE], tf.string),
            "cameras": tf.io.FixedLenFeature([SEQUENCE_SIZE * 5], tf.float32),
        }
        for path in files:
            name = os.path.basename(path)
            try:
                for record_index, record in enumerate(tf.data.TFRecordDataset(path)):
                    parsed = tf.io.parse_single_example(record, features)
                    cameras = parsed["cameras"].numpy().reshape(SEQUENCE_SIZE, 5)
                    for frame_index, jpeg in enumerate(parsed["frames"].numpy()):
                        image = _decode(jpeg, path, record_index, frame_index)
                        scene = f"{name}:{record_index}"
                        yield f"{scene}:{frame_index}", {
                            "image": image,
                            "camera": cameras[frame_index].astype(np.float32),
                            "scene": scene,
                            "frame_index": np.int32(frame_index),
                        }
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
                raise RuntimeError(
                    f"{path}: corrupt GQN record ({error.message.splitlines()[0]}); "
                    "download this file again"
                ) from error


def _advice(root, manual):
    where = f"{manual}/{BASEPATH}/train not found" if manual else "none given"
    return (
        f"The builder reads the files from {root} directly when it can, else from "
        f"--manual_dir ({where}): copy them on a machine with network access with "
        f"`gsutil -m cp -r {root} <folder>/` (the 'first_files' config needs only the "
        f"first 20 train and 4 test files) and pass --manual_dir=<folder>."
    )


def _glob(pattern):
    """tf.io.gfile.glob (gs:// or local); a seam for tests of the bucket branch."""
    return tf.io.gfile.glob(pattern)


def _list_files(root, split, advice=""):
    try:
        files = sorted(_glob(f"{root}/{split}/*.tfrecord"))
    except (tf.errors.OpError, OSError) as error:
        raise RuntimeError(f"cannot list {root}/{split} ({error}). {advice}".rstrip()) \
            from error
    if not files:
        raise RuntimeError(f"no *.tfrecord files in {root}/{split}. {advice}".rstrip())
    return files


def _decode(jpeg, path, record_index, frame_index):
    try:
        image = tf.io.decode_jpeg(jpeg, channels=3).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise RuntimeError(
            f"{path}: record {record_index}, frame {frame_index} is not a valid JPEG "
            f"({error.message.splitlines()[0]}); download this file again"
        ) from error
    if image.shape != (FRAME_SIZE, FRAME_SIZE, 3):
        raise RuntimeError(f"{path}: record {record_index}, frame {frame_index} has shape "
                           f"{image.shape}, expected {(FRAME_SIZE, FRAME_SIZE, 3)}")
    return image

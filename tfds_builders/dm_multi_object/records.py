"""DeepMind's multi-object-datasets files: layout, reading, and the shared builder code.

Each dataset is one (or, for Objects Room, four) GZIP-compressed TFRecord file(s) in the
public bucket ``gs://multi-object-datasets/<folder>/<file>.tfrecords``
(https://github.com/deepmind/multi_object_datasets). Every record is a tf.train.Example of
fixed-length features: ``image`` [H, W, C] and ``mask`` [K, H, W, 1] (Multi-dSprites:
[H, W, K, 1]) are stored as bytes lists of H·W·C (K·H·W) one-byte strings, decoded with
``tf.io.decode_raw`` to uint8; the per-entity attributes are float lists of length K (or
K·3), except CLEVR's ``size``/``material``/``shape``/``color``, which are K one-byte strings
holding integer codes. K is the maximum number of entities (background included) of the
variant; the masks of absent entities are all zero.

Every builder turns a record into: ``image`` (uint8, as stored), ``mask`` (uint8 [K, H, W,
1], 0 or 255, in DeepMind's order), ``instance_ids`` (uint8 [H, W, 1]: the index of the
mask that covers the pixel, with every background mask mapped to 0 and the objects numbered
from 1 in mask order) and every attribute under its own name and dtype.

Splits: a file that is the whole training set gets deterministic validation and test splits
by record index: records [0, n_test) are ``test``, [n_test, n_test + n_validation)
``validation`` and the rest ``train`` (each builder states n_test and n_validation). Files
that DeepMind publishes as test sets give the ``test`` split only.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders import downloads

BUCKET = "gs://multi-object-datasets"
HOMEPAGE = "https://github.com/deepmind/multi_object_datasets"
COMPRESSION = "GZIP"
READ_BUFFER = 8 << 20


@dataclasses.dataclass(frozen=True)
class Layout:
    """What one dataset's records hold (besides image and mask).

    attributes: {name: (shape per entity, "float32" or "uint8")}; "uint8" attributes are
    stored as one-byte strings (decode_raw), "float32" ones as float lists.
    """

    image_size: tuple
    attributes: dict
    masks_last: bool = False  # Multi-dSprites stores mask as [H, W, K, 1]
    num_background_masks: int = 1  # Objects Room: sky, floor and two wall halves


@dataclasses.dataclass
class FileConfig(tfds.core.BuilderConfig):
    """One bucket file: its name, K (max_num_entities), image channels, split rule."""

    file: str = ""
    max_num_entities: int = 0
    channels: int = 3
    test_file: bool = False  # a published test set: only the "test" split


def record_spec(layout, num_entities, channels):
    """{key: (shape as stored, "bytes" or "float")} of one record."""
    h, w = layout.image_size
    mask_shape = (h, w, num_entities, 1) if layout.masks_last else (num_entities, h, w, 1)
    spec = {"image": ((h, w, channels), "bytes"), "mask": (mask_shape, "bytes")}
    for name, (shape, dtype) in layout.attributes.items():
        spec[name] = ((num_entities, *shape), "bytes" if dtype == "uint8" else "float")
    return spec


def features(layout, num_entities, channels):
    """The TFDS FeaturesDict of a dataset with this layout."""
    h, w = layout.image_size
    feats = {
        "image": tfds.features.Image(shape=(h, w, channels)),
        "instance_ids": tfds.features.Image(shape=(h, w, 1)),
        "mask": tfds.features.Tensor(shape=(num_entities, h, w, 1), dtype=np.uint8,
                                     encoding=tfds.features.Encoding.ZLIB),
    }
    for name, (shape, dtype) in layout.attributes.items():
        feats[name] = tfds.features.Tensor(shape=(num_entities, *shape),
                                           dtype=np.dtype(dtype))
    return tfds.features.FeaturesDict(feats)


def _parser(spec):
    description = {
        key: tf.io.FixedLenFeature([int(np.prod(shape))],
                                   tf.string if kind == "bytes" else tf.float32)
        for key, (shape, kind) in spec.items()
    }

    def parse(record):
        parsed = tf.io.parse_single_example(record, description)
        out = {}
        for key, (shape, kind) in spec.items():
            value = parsed[key]
            if kind == "bytes":
                value = tf.io.decode_raw(value, tf.uint8)  # [N, 1]: one byte per string
            out[key] = tf.reshape(value, shape)
        return out

    return parse


def _raw_records(path):
    return tf.data.TFRecordDataset(path, compression_type=COMPRESSION,
                                   buffer_size=READ_BUFFER)


def describe_bad_record(path, index, spec):
    """Why record `index` of `path` does not match `spec` (naming the key), or None."""
    try:
        raw = next(iter(_raw_records(path).skip(index).take(1))).numpy()
        example = tf.train.Example.FromString(raw)
    except Exception as error:  # pylint: disable=broad-except
        return f"is not a tf.train.Example ({type(error).__name__})"
    present = example.features.feature
    for key, (shape, kind) in spec.items():
        if key not in present:
            return f"has no feature {key!r}"
        feature = present[key]
        values = feature.bytes_list.value if kind == "bytes" else feature.float_list.value
        expected = int(np.prod(shape))
        if len(values) != expected:
            kind_name = "bytes" if kind == "bytes" else "float"
            return (f"feature {key!r} has {len(values)} {kind_name} values, expected "
                    f"{expected} (shape {list(shape)})")
        if kind == "bytes" and any(len(v) != 1 for v in values[:16]):
            return f"feature {key!r} does not hold one byte per value"
    return None


def read_records(path, spec, start=0, stop=None):
    """Yields (record index, {key: numpy array in the stored shape}) for [start, stop).

    A record that lacks a feature, or holds one of the wrong length, raises RuntimeError
    naming the file, the record and the key; a damaged file names the file.
    """
    ds = _raw_records(path).skip(start)
    if stop is not None:
        ds = ds.take(max(stop - start, 0))
    ds = ds.map(_parser(spec), num_parallel_calls=2).prefetch(4)
    iterator = iter(ds)
    index = start
    while True:
        try:
            values = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as error:
            reason = describe_bad_record(path, index, spec) or error.message.splitlines()[0]
            raise RuntimeError(f"{path}: record {index} {reason}") from error
        except tf.errors.NotFoundError as error:
            raise RuntimeError(f"{path}: not found ({error.message.splitlines()[0]})") \
                from error
        except (tf.errors.DataLossError, tf.errors.OpError) as error:
            raise RuntimeError(
                f"{path}: damaged file after record {index} "
                f"({error.message.splitlines()[0][:200]}); download it again") from error
        yield index, {key: value.numpy() for key, value in values.items()}
        index += 1


def instance_ids(mask, num_background_masks=1):
    """uint8 [H, W]: 0 where a background mask (or none) covers the pixel, else the
    object's number (1 for the first object mask after the background ones)."""
    entity = np.argmax(mask[..., 0], axis=0)  # [K, H, W] -> [H, W]; first mask on ties
    covered = mask[..., 0].max(axis=0) > 0
    ids = np.where(covered & (entity >= num_background_masks),
                   entity - num_background_masks + 1, 0)
    return ids.astype(np.uint8)


def to_example(values, layout):
    """A record's decoded values -> the builder's example dict."""
    mask = values["mask"]
    if layout.masks_last:  # [H, W, K, 1] -> [K, H, W, 1]
        mask = np.transpose(mask, (2, 0, 1, 3))
    example = {
        "image": values["image"],
        "mask": np.ascontiguousarray(mask),
        "instance_ids": instance_ids(mask, layout.num_background_masks)[..., None],
    }
    for name, (_, dtype) in layout.attributes.items():
        example[name] = values[name].astype(dtype)
    return example


# ------------------------------------------------------------------ finding the file


def _exists(path):
    """tf.io.gfile.exists (gs:// or local); a seam for tests of the bucket branch."""
    return tf.io.gfile.exists(path)


def _resolve(url):
    """The path the reader opens for a bucket URL (identity; tests map it to dummy_data)."""
    return url


def advice(folder, file, manual):
    where = f"{file} not found in {manual}" if manual else "none given"
    return (
        f"The builder reads {BUCKET}/{folder}/{file} directly when it can, else from "
        f"--manual_dir ({where}): copy it on a machine with network access with "
        f"`gsutil cp {BUCKET}/{folder}/{file} <folder>/` and pass --manual_dir=<folder>."
    )


def source_file(dl_manager, folder, file):
    """<manual_dir>/<file> or <manual_dir>/<folder>/<file> if there, else the bucket URL.

    The bucket is read through tf.io.gfile, which retries an unreachable host for
    minutes; a fast probe of the host comes first.
    """
    manual = downloads.manual_dir(dl_manager)
    if manual is not None:
        for candidate in (os.path.join(manual, file), os.path.join(manual, folder, file)):
            if tf.io.gfile.exists(candidate):
                return candidate
    url = f"{BUCKET}/{folder}/{file}"
    hint = advice(folder, file, downloads.configured_manual_dir(dl_manager))
    if url.startswith("gs://"):
        downloads.check_reachable(url, hint)
    path = _resolve(url)
    try:
        found = _exists(path)
    except (tf.errors.OpError, OSError) as error:
        raise RuntimeError(f"cannot read {url} ({error}). {hint}") from error
    if not found:
        raise RuntimeError(f"{url} not found. {hint}")
    return path


# ------------------------------------------------------------------ builder code


class MultiObjectBuilder:
    """Mixin with the builder methods; a dataset sets FOLDER, LAYOUT and SPLIT_RECORDS
    ({"test": n_test, "validation": n_validation} carved from a training file)."""

    FOLDER = ""
    LAYOUT = None
    SPLIT_RECORDS = {}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Copy the config's file from gs://multi-object-datasets/<dataset folder>/ into the "
        "manual_dir (flat, or keeping the bucket's folder), e.g. `gsutil cp "
        "gs://multi-object-datasets/objects_room/objects_room_train.tfrecords <manual_dir>/`. "
        "Without it the builder reads the bucket directly."
    )

    def _info(self):
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=features(self.LAYOUT, config.max_num_entities, config.channels),
            supervised_keys=None,
            homepage=HOMEPAGE,
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        path = source_file(dl_manager, self.FOLDER, config.file)
        if config.test_file:
            return {"test": self._generate_examples(path, 0, None)}
        n_test, n_val = self.SPLIT_RECORDS["test"], self.SPLIT_RECORDS["validation"]
        return {
            "train": self._generate_examples(path, n_test + n_val, None),
            "validation": self._generate_examples(path, n_test, n_test + n_val),
            "test": self._generate_examples(path, 0, n_test),
        }

    def _generate_examples(self, path, start, stop):
        config = self.builder_config
        spec = record_spec(self.LAYOUT, config.max_num_entities, config.channels)
        name = os.path.basename(path)
        for index, values in read_records(path, spec, start, stop):
            yield f"{name}:{index}", to_example(values, self.LAYOUT)


# ------------------------------------------------------------------ writing (dummy data)


def encode_record(values, spec):
    """{key: array in the stored shape} -> serialized tf.train.Example in the real layout
    (bytes features as one one-byte string per element). Keys absent from `values` are
    left out (for tests of broken records)."""
    feature = {}
    for key, (shape, kind) in spec.items():
        if key not in values:
            continue
        value = np.asarray(values[key])
        if value.shape != tuple(shape):
            raise ValueError(f"{key}: shape {value.shape}, expected {tuple(shape)}")
        if kind == "bytes":
            flat = value.astype(np.uint8).reshape(-1).tobytes()
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[flat[i:i + 1] for i in range(len(flat))]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(
                value=value.astype(np.float32).reshape(-1)))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, records):
    """Writes serialized examples to a GZIP TFRecord file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type=COMPRESSION)
    with tf.io.TFRecordWriter(path, options) as writer:
        for record in records:
            writer.write(record)


def dummy_scene(rng, layout, num_entities, channels, num_objects, palette):
    """A flat-coloured scene in the stored layout: background mask(s), then up to
    `num_objects` rectangles (occluding each other in order); zero masks after them."""
    h, w = layout.image_size
    entity = np.zeros((h, w), np.int64)
    nb = layout.num_background_masks
    for b in range(1, nb):  # extra background parts: horizontal bands
        entity[b * h // nb:] = b
    for k in range(num_objects):
        y, x = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
        dy, dx = rng.integers(h // 8, h // 3), rng.integers(w // 8, w // 3)
        entity[y:y + dy, x:x + dx] = nb + k
    colours = rng.choice(palette, size=(num_entities, channels))
    image = colours[entity].astype(np.uint8)
    masks = np.stack([(entity == k) for k in range(num_entities)]).astype(np.uint8) * 255
    masks = masks[..., None]  # [K, H, W, 1]
    if layout.masks_last:
        masks = np.transpose(masks, (1, 2, 0, 3))
    values = {"image": image, "mask": masks}
    present = np.zeros(num_entities, np.float32)
    present[:nb + num_objects] = 1.0
    for name, (shape, dtype) in layout.attributes.items():
        size = (num_entities, *shape)
        if dtype == "uint8":
            value = rng.integers(1, 4, size).astype(np.uint8)
        else:
            value = rng.uniform(0, 1, size).astype(np.float32)
        value = value * present.reshape((-1,) + (1,) * len(shape)).astype(value.dtype)
        values[name] = present if name == "visibility" else value
    return values


def write_dummy_file(path, layout, num_entities, channels, object_counts, seed, palette):
    """A dummy file in the real layout: one scene per entry of `object_counts`."""
    rng = np.random.default_rng(seed)
    spec = record_spec(layout, num_entities, channels)
    write_records(path, [
        encode_record(dummy_scene(rng, layout, num_entities, channels, n, palette), spec)
        for n in object_counts])

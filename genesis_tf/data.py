"""Input pipelines: TFDS splits -> batched float32 images in [0, 1] at the model's size.

Datasets are named as TFDS names with an optional config, e.g.
``multi_dsprites/offline_colored``, ``gqn_rooms_ring_camera``, ``shapestacks``, and
DeepMind's multi-object-datasets files ``objects_room[/train|/empty_room|/six_objects|
/identical_color]``, ``clevr_with_masks``, ``dm_multi_dsprites[/colored_on_colored|
/colored_on_grayscale|/binarized]``, ``tetrominoes``, ``apc`` (stored at 128×128 with a
0/1 object ``mask``, which evaluation reads as the instance ids), plus
``synthetic``: coloured rectangles on a coloured background generated on the fly (no
preparation; for tests and smoke runs).

Resizing happens here, not in the builders. Training batches are shuffled, repeated,
batched with drop_remainder and prefetched; with a ``tf.distribute.InputContext`` the data
is sharded per input pipeline and batched per replica.
"""
import os

import tensorflow as tf

from genesis_tf.errors import UserError

SYNTHETIC = "synthetic"
BUILDER_FOLDERS = {
    "multi_dsprites": "multi_dsprites",
    "gqn_rooms_ring_camera": "gqn_rooms_ring_camera",
    "shapestacks": "shapestacks",
    "sketchy": "sketchy",
    # DeepMind's multi-object-datasets (gs://multi-object-datasets).
    "objects_room": "objects_room",
    "clevr_with_masks": "clevr_with_masks",
    "dm_multi_dsprites": "dm_multi_dsprites",
    "tetrominoes": "tetrominoes",
    "apc": "apc",  # MIT-Princeton APC 2016 frames (issue 32)
}
# The feature evaluation reads as instance ids where it is not "instance_ids": APC's 0/1
# foreground "mask" (0 the background, 1 the object).
INSTANCE_IDS_FEATURE = {"apc": "mask"}


# The GENESIS reference centre-crops ShapeStacks' 224×224 renders to 196×196 before resizing.
CENTRE_CROP = {"shapestacks": 196 / 224}
# MONet (appendix C) crops CLEVR's 240×320 images to y 29–221, x 64–256 (192×192) before
# resizing: (offset_y, offset_x, height, width).
CROP_BOX = {"clevr_with_masks": (29, 64, 192, 192)}


def dataset_crop(name):
    """The crop the input pipeline applies to `name`: a centre fraction, a box or None."""
    base = _split_name(name)[0]
    return CROP_BOX.get(base, CENTRE_CROP.get(base))


class DatasetNotPreparedError(UserError, RuntimeError):
    """The requested TFDS dataset has not been built into data_dir."""


class UnknownDatasetError(UserError, ValueError):
    """No dataset (or no config of it) has that name."""


class UnknownSplitError(UserError, ValueError):
    """The dataset has no split of that name."""


class DatasetCorruptError(UserError, RuntimeError):
    """A prepared dataset's file cannot be read (truncated or damaged record)."""


def _split_name(name):
    base, _, config = name.partition("/")
    return base, (config or None)


def build_command(name, data_dir=None):
    """The command that prepares `name` (used in error messages and docs)."""
    base, config = _split_name(name)
    parts = ["python -m genesis_tf.build_dataset build", f"tfds_builders/{base}"]
    if config:
        parts.append(f"--config={config}")
    if data_dir:
        parts.append(f"--data_dir={data_dir}")
    return " ".join(parts)


def builder(name, data_dir=None):
    """The TFDS builder of a prepared dataset; DatasetNotPreparedError if it is absent."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  (registers the builders)

    base, config = _split_name(name)
    if base not in BUILDER_FOLDERS:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; choose one of {sorted(BUILDER_FOLDERS)} "
            f"(optionally with /<config>) or {SYNTHETIC!r}"
        )
    try:
        b = tfds.builder(name, data_dir=data_dir)
    except ValueError as error:  # e.g. an unknown config
        configs = [c.name for c in tfds.builder_cls(base).BUILDER_CONFIGS]
        # TFDS's own message for a misspelt config is long and lists near names: ours is
        # shorter and lists them all.
        reason = (f"{base} has no config {config!r}" if config not in configs
                  else str(error).splitlines()[0][:200])
        raise UnknownDatasetError(
            f"unknown dataset {name!r} ({reason}); {base} has the configs {configs}"
        ) from error
    if not is_prepared(b):
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        raise DatasetNotPreparedError(
            f"dataset {name!r} is not prepared in {where}. Build it first with:\n"
            f"    {build_command(name, data_dir)}\n"
            "(see BUILD.md, section Datasets, for sources and manual downloads)"
        )
    return b


def is_prepared(b):
    """Whether TFDS builder ``b`` has been built into its data_dir.

    TFDS's ``b.is_prepared()`` logs "Variant folder … has no dataset_info.json" for every
    dataset not built yet, which before a first build is the normal case and no warning;
    it is asked only once that file exists, where it has nothing to warn about.
    """
    return b.data_path.joinpath("dataset_info.json").exists() and b.is_prepared()


def check_available(name, data_dir=None):
    """Raises ValueError for an unknown name and DatasetNotPreparedError for a dataset that
    has not been built, before a run writes anything."""
    if name != SYNTHETIC:
        builder(name, data_dir)


def raise_if_corrupt(error, name, data_dir=None):
    """Turns a tf.data read error of a prepared dataset into DatasetCorruptError naming the
    damaged file(s) and the rebuild command; returns if `error` is not of that kind."""
    message = getattr(error, "message", str(error))
    if not isinstance(error, tf.errors.DataLossError) and "corrupted record" not in message \
            and "truncated record" not in message:
        return
    files = []
    if name != SYNTHETIC:
        files = [f for f in _split_files(name, data_dir) if _is_damaged(f)]
    where = ", ".join(files) if files else f"the files of {name!r}"
    raise DatasetCorruptError(
        f"{where}: damaged record ({message.splitlines()[0][:200]}). Delete the dataset and "
        f"build it again:\n    {build_command(name, data_dir)} --overwrite"
    ) from error


def _split_files(name, data_dir):
    b = builder(name, data_dir)
    return sorted(tf.io.gfile.glob(os.path.join(os.fspath(b.data_dir), "*.tfrecord*")))


def _is_damaged(path):
    try:
        for _ in tf.data.TFRecordDataset(path):
            pass
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
        return True
    return False


def prepare(name, data_dir=None, manual_dir=None):
    """Builds `name` into data_dir unless it is there already; returns the builder."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401

    b = tfds.builder(name, data_dir=data_dir)
    if not is_prepared(b):
        print(f"Preparing {name} in {b.data_dir} ...", flush=True)
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        b.download_and_prepare(download_config=config)
    return b


def centre_crop(images, fraction):
    """Keeps the central `fraction` of height and width of [..., H, W, C]."""
    if fraction is None or fraction >= 1.0:
        return images
    return tf.image.central_crop(images, fraction)


def crop_images(images, crop):
    """Applies a dataset's crop to [..., H, W, C]: a centre fraction (float), a box
    (offset_y, offset_x, height, width) or None."""
    if isinstance(crop, tuple):
        return tf.image.crop_to_bounding_box(images, *crop)
    return centre_crop(images, crop)


def to_float_images(images, image_size, crop=None):
    """uint8 or float images [..., H, W, 3] (or one grey channel) -> float32
    [..., S, S, 3] in [0, 1]. `crop`: see crop_images."""
    images = crop_images(images, crop)
    if images.shape[-1] == 1:  # e.g. dm_multi_dsprites/binarized
        images = tf.image.grayscale_to_rgb(images)
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    else:
        images = tf.cast(images, tf.float32)
    if images.shape[-3] != image_size or images.shape[-2] != image_size:
        images = tf.image.resize(images, [image_size, image_size], antialias=True)
        images = tf.clip_by_value(images, 0.0, 1.0)
    return images


def resize_instance_ids(ids, image_size):
    """int instance ids [H, W, 1] -> int32 [S, S]: each pixel labelled with the entity that
    contributes most to its colour under to_float_images' resize (one-hot ids resized with
    the same filter, then argmax; a tie goes to the lower id, the background first).

    Nearest-neighbour sampling would be off by half a source pixel from the image's
    content and, at 64 -> 32, label a sprite's edge pixels by one of four samples."""
    ids = tf.cast(ids[..., 0], tf.int32)
    if ids.shape[-2] == image_size and ids.shape[-1] == image_size:
        return ids
    one_hot = tf.one_hot(ids, tf.reduce_max(ids) + 1)
    weights = tf.image.resize(one_hot, [image_size, image_size], antialias=True)
    return tf.argmax(weights, axis=-1, output_type=tf.int32)


def synthetic_scene(index, image_size, seed=0):
    """A reproducible random scene: 1–3 axis-aligned coloured rectangles on a background.

    Returns dict(image float32 [S, S, 3], instance_ids int32 [S, S]).
    """
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    levels = tf.random.stateless_uniform([4, 3], key, maxval=5, dtype=tf.int32)
    colours = tf.cast(levels, tf.float32) / 4.0  # 5 levels per channel, as Multi-dSprites
    boxes = tf.random.stateless_uniform([3, 4], key + 1, minval=0.0, maxval=1.0)
    count = tf.random.stateless_uniform([], key + 2, minval=1, maxval=4, dtype=tf.int32)
    grid = (tf.range(image_size, dtype=tf.float32) + 0.5) / image_size
    image = tf.broadcast_to(colours[0], [image_size, image_size, 3])
    ids = tf.zeros([image_size, image_size], tf.int32)
    for k in range(3):
        top, left = boxes[k, 0] * 0.7, boxes[k, 1] * 0.7
        height, width = 0.15 + boxes[k, 2] * 0.3, 0.15 + boxes[k, 3] * 0.3
        rows = (grid >= top) & (grid < top + height)
        cols = (grid >= left) & (grid < left + width)
        inside = rows[:, None] & cols[None, :] & (k < count)
        image = tf.where(inside[..., None], colours[k + 1], image)
        ids = tf.where(inside, k + 1, ids)
    return {"image": image, "instance_ids": ids}


def _tfds_split(name, split, data_dir, shuffle_files, input_context, seed,
                encoded_images=False):
    """The split's examples; with encoded_images the images stay PNG/JPEG bytes (decode
    them with ``decode_image``) so shuffling and skipping stay cheap."""
    import tensorflow_datasets as tfds

    b = builder(name, data_dir)
    if split not in b.info.splits:
        raise UnknownSplitError(f"{name} has no split {split!r}; it has "
                                f"{', '.join(sorted(b.info.splits))} (--split)")
    read_config = tfds.ReadConfig(
        input_context=input_context,
        shuffle_seed=seed,
        interleave_cycle_length=4,
        # TFDS caches small datasets in memory; a partly read cache (evaluation's first
        # batches) only prints warnings.
        try_autocache=False,
    )
    decoders = {"image": tfds.decode.SkipDecoding()} if encoded_images else None
    features = b.info.features
    ids_key = INSTANCE_IDS_FEATURE.get(_split_name(name)[0], "instance_ids")
    if "mask" in features:
        # multi-object-datasets: the stack of K full-size masks is large and unused here
        # (evaluation reads instance_ids); training needs the image only.
        keep = ["image"] if encoded_images else [
            k for k in features if k != "mask" or k == ids_key]
        decoders = tfds.decode.PartialDecoding({k: True for k in keep}, decoders=decoders)
    ds = b.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config,
                      decoders=decoders)
    return ds, b.info.features["image"]


def train_dataset(name, image_size, global_batch_size, split="train", data_dir=None,
                  seed=None, shuffle=True, repeat=True, input_context=None,
                  shuffle_buffer=10_000, skip_examples=0):
    """Training batches: dicts {"image": float32 [b, S, S, 3]}, b per replica with an
    input_context (the global batch otherwise). Deterministic when `seed` is set.

    skip_examples: examples of this input pipeline's stream to pass over first (a resumed
    run continues where it stopped); skipped before decoding, so it costs a read only.
    """
    batch = global_batch_size
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(global_batch_size)
    if name == SYNTHETIC:
        ds = tf.data.Dataset.range(2**62)
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        ds = ds.skip(skip_examples).map(
            lambda i: {"image": synthetic_scene(i, image_size, seed or 0)["image"]},
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds, image_feature = _tfds_split(name, split, data_dir, shuffle, input_context, seed,
                                        encoded_images=True)
        ds = ds.map(lambda ex: ex["image"])  # PNG/JPEG bytes: cheap to shuffle and skip
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        crop = dataset_crop(name)
        ds = ds.skip(skip_examples).map(
            lambda encoded: {"image": to_float_images(
                image_feature.decode_example(encoded), image_size, crop)},
            num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = seed is not None
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def eval_dataset(name, image_size, batch_size, split="test", data_dir=None, max_examples=None):
    """Evaluation batches in file order: "image" plus "instance_ids" int32 [b, H, W] and
    labels where the dataset has them. drop_remainder=False, no shuffle, no repeat."""
    if name == SYNTHETIC:
        ds = tf.data.Dataset.range(max_examples or 256).map(
            lambda i: synthetic_scene(i, image_size, seed=12345))
    else:
        ds, _ = _tfds_split(name, split, data_dir, False, None, None)
        if max_examples:
            ds = ds.take(max_examples)

        crop = dataset_crop(name)
        ids_key = INSTANCE_IDS_FEATURE.get(_split_name(name)[0], "instance_ids")

        def convert(ex):
            out = {"image": to_float_images(ex["image"], image_size, crop)}
            if ids_key in ex:
                ids = crop_images(tf.cast(ex[ids_key], tf.int32), crop)  # [H, W, 1]
                out["instance_ids"] = resize_instance_ids(ids, image_size)
            for key in ("num_objects", "stable", "height", "view"):
                if key in ex:
                    out[key] = ex[key]
            return out

        ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

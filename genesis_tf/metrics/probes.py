"""ShapeStacks probes (GENESIS, Table 1): how much a frozen representation says about a scene.

An MLP classifier ("probe") is trained on a model's ``features(images)`` of labelled
ShapeStacks images for each of three tasks: stability (2 classes), tower height (2–6
blocks, 5 classes) and camera view (16 classes); its test accuracy measures how easily the
label can be read from the representation. The paper's settings are the defaults here: one
hidden layer of 512 ELU units and a softmax output, Adam with learning rate 1e-4, batch 128,
100 epochs, trained on 50,000 latents. Features are used as they come (the paper does not
standardise them); ``standardize=True`` is an opt-in departure.

    train = collect_features(model, "shapestacks", 64, "train", max_examples=50_000)
    test = collect_features(model, "shapestacks", 64, "test")
    scores = run_probes(train, test)  # {"stability": {"accuracy": ..., ...}, ...}
"""
from typing import NamedTuple

import numpy as np


class Task(NamedTuple):
    """A probe task: its number of classes and the function mapping a batch of dataset
    features (a dict of arrays as genesis_tf.data.eval_dataset yields) to labels 0..n-1."""

    num_classes: int
    label_fn: object


def _label_fn(task, key, first, num_classes):
    """Labels of `task` from the dataset feature `key`, whose values run from `first` to
    first + num_classes - 1; anything else is refused rather than silently wrapped."""

    def labels(batch):
        if key not in batch:
            raise ValueError(f"the dataset has no {key!r} feature, so it has no {task!r} "
                             f"labels (it has {sorted(batch)}); the probes need ShapeStacks")
        raw = np.asarray(batch[key]).astype(np.int64).reshape(-1)
        bad = (raw < first) | (raw >= first + num_classes)
        if bad.any():
            raise ValueError(
                f"{task} labels: {key} values {sorted(set(raw[bad].tolist()))[:10]} are "
                f"outside {first}..{first + num_classes - 1} (the {num_classes} classes of "
                f"the {task} probe)")
        return raw - first

    return labels


# The builder stores the raw ShapeStacks values: stable is a ClassLabel (0 unstable,
# 1 stable); height is the block count 2..6; view is the n of the render's "cam_<n>", and
# the ShapeStacks renderer names its 16 cameras cam_1..cam_16, so the view is 1-based.
TASKS = {
    "stability": Task(2, _label_fn("stability", "stable", 0, 2)),
    "height": Task(5, _label_fn("height", "height", 2, 5)),
    "view": Task(16, _label_fn("view", "view", 1, 16)),
}


def _check_tasks(tasks):
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown probe task(s) {unknown}; choose from {sorted(TASKS)}")
    return tasks


def collect_features(model, dataset, image_size, split, data_dir=None, batch_size=64,
                     max_examples=None, progress=None, tasks=tuple(TASKS), num_slots=None):
    """Streams a split through ``model.features`` (no gradients, inference mode).

    Returns (features float32 [N, F], {task: int64 labels [N]}) in the dataset's file order.
    `progress`, if given, is called with the number of images done after each batch;
    `num_slots` (if not None) is passed on to ``features`` (K at test time).
    """
    from genesis_tf.metrics import forward

    tasks = _check_tasks(tasks)
    model_size = getattr(model, "image_size", None)
    if model_size is not None and model_size != image_size:
        raise ValueError(f"the model takes {model_size}×{model_size} images but "
                         f"image_size={image_size} was asked for")
    # features() runs every model in inference mode itself (the scene models call
    # themselves with training=False and posterior means); the shared forward traces it
    # once instead of eager calls, which keeps a 50,000-image pass affordable.
    chunks, labels, width = [], {t: [] for t in tasks}, None
    for batch, values in forward.forward_batches(
            model, dataset, image_size, split=split, data_dir=data_dir,
            batch_size=batch_size, num_images=max_examples, num_slots=num_slots,
            call=forward.features, progress=progress):
        count = int(batch["image"].shape[0])
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[0] != count:
            raise ValueError(f"model.features returned shape {values.shape} for {count} "
                             "images; expected [images, features]")
        if width is not None and values.shape[1] != width:
            raise ValueError(f"model.features changed width from {width} to "
                             f"{values.shape[1]} between batches")
        width = values.shape[1]
        chunks.append(values)
        for task in tasks:
            labels[task].append(TASKS[task].label_fn(batch))
    return (np.concatenate(chunks),
            {task: np.concatenate(parts) for task, parts in labels.items()})


def _check_set(features, labels, num_classes, which):
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"{which} features must be [N, F], got shape {features.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{which} labels must be [N], got shape {labels.shape}")
    if len(features) != len(labels):
        raise ValueError(f"{which} set: {len(features)} feature rows but {len(labels)} "
                         "labels")
    if not len(labels):
        raise ValueError(f"the {which} set is empty")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{which} labels must be integer class indices, got "
                             f"{labels.dtype} values such as {labels[:3].tolist()}")
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(f"{which} labels {sorted(set(bad.tolist()))[:10]} are outside "
                         f"0..{num_classes - 1} (num_classes={num_classes})")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{which} features contain NaN or infinite values")
    return features.astype(np.float32), labels.astype(np.int64)


def majority_rate(labels):
    """The accuracy of always predicting the most frequent class of `labels`."""
    labels = np.asarray(labels, dtype=np.int64)
    return float(np.bincount(labels).max() / len(labels))


def train_probe(train_features, train_labels, test_features, test_labels, num_classes,
                hidden_units=512, learning_rate=1e-4, batch_size=128, epochs=100, seed=0,
                verbose=0, standardize=False):
    """Trains the GENESIS probe MLP on (train_features, train_labels) and scores it.

    Returns dict(accuracy=test accuracy, train_accuracy=accuracy on the training set after
    training, chance=majority-class rate of the test labels). Deterministic for a seed on
    the same machine. standardize=True scales features by the training set's mean and
    standard deviation first (not in the paper; off by default).
    """
    import keras

    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes}")
    num_classes = int(num_classes)
    x_train, y_train = _check_set(train_features, train_labels, num_classes, "train")
    x_test, y_test = _check_set(test_features, test_labels, num_classes, "test")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train features have {x_train.shape[1]} columns but test features "
                         f"have {x_test.shape[1]}")
    if standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)  # constant columns stay 0 instead of NaN
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    # Seeds Python, NumPy and TF: initial weights and the epoch shuffles repeat.
    keras.utils.set_random_seed(seed)
    probe = keras.Sequential([
        keras.Input((x_train.shape[1],)),
        keras.layers.Dense(hidden_units, activation="elu"),
        # The paper's softmax output, folded into the loss (from_logits) for numerical
        # stability; argmax of the logits is argmax of the softmax.
        keras.layers.Dense(num_classes),
    ])
    probe.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probe.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True,
              verbose=verbose)

    def accuracy(x, y):
        # Eager calls in large chunks: cheaper than tracing predict() for two passes.
        logits = np.concatenate([np.asarray(probe(x[i:i + 4096], training=False))
                                 for i in range(0, len(x), 4096)])
        return float(np.mean(np.argmax(logits, axis=1) == y))

    return {"accuracy": accuracy(x_test, y_test),
            "train_accuracy": accuracy(x_train, y_train),
            "chance": majority_rate(y_test)}


def run_probes(train, test, tasks=tuple(TASKS), **kwargs):
    """One probe per task: train and test are (features, {task: labels}) pairs as
    collect_features returns them; kwargs go to train_probe. -> {task: train_probe dict}."""
    tasks = _check_tasks(tasks)
    (x_train, train_labels), (x_test, test_labels) = train, test
    results = {}
    for task in tasks:
        for which, labels in (("train", train_labels), ("test", test_labels)):
            if task not in labels:
                raise ValueError(f"the {which} set has no {task!r} labels (it has "
                                 f"{sorted(labels)})")
        results[task] = train_probe(x_train, train_labels[task], x_test, test_labels[task],
                                    TASKS[task].num_classes, **kwargs)
    return results


__all__ = ["TASKS", "Task", "collect_features", "majority_rate", "run_probes", "train_probe"]

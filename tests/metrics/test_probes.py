"""The ShapeStacks probes: the MLP learns what is there, finds nothing where nothing is,
and collect_features reads real-format ShapeStacks (built from the builder's dummy data)."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from genesis_tf.metrics import probes
from tfds_builders.shapestacks import shapestacks_dataset_builder as shapestacks


def linear_task(num_train, num_test, dim=8, num_classes=4, seed=0):
    """Gaussian features labelled by the argmax of a fixed random linear map."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(dim, num_classes))
    x = rng.normal(size=(num_train + num_test, dim)).astype(np.float32)
    y = np.argmax(x @ weights, axis=1)
    return (x[:num_train], y[:num_train]), (x[num_train:], y[num_train:])


# ------------------------------------------------------------------ train_probe


def test_probe_learns_a_linear_label():
    (x_train, y_train), (x_test, y_test) = linear_task(2000, 1000)
    # The paper's MLP and Adam, but learning rate 1e-3 instead of 1e-4: at 1e-4 this set
    # needs ~30 epochs to pass 95 % (10 s here); 1e-3 gets to ~99 % in 15 epochs.
    result = probes.train_probe(x_train, y_train, x_test, y_test, 4, learning_rate=1e-3,
                                epochs=15)
    assert result["accuracy"] >= 0.95
    assert result["train_accuracy"] >= 0.95
    assert result["chance"] == pytest.approx(np.bincount(y_test).max() / len(y_test))
    assert result["chance"] < 0.5  # so the accuracy is not a majority-class artefact


def test_probe_is_at_chance_on_shuffled_labels():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 8)).astype(np.float32)
    score = x @ rng.normal(size=8)

    def terciles(s):  # a learnable label with exactly balanced classes...
        return np.argsort(np.argsort(s)) * 3 // len(s)

    # ...until train and test labels are each permuted relative to their features.
    x_train, y_train = x[:2000], rng.permutation(terciles(score[:2000]))
    x_test, y_test = x[2000:], rng.permutation(terciles(score[2000:]))
    result = probes.train_probe(x_train, y_train, x_test, y_test, 3, learning_rate=1e-3,
                                epochs=10)
    # With labels independent of the features, any classifier's expected accuracy is
    # Σ_c P(predict c)·P(label c), which is 1/3 here whatever it predicts, as the test
    # classes are balanced (majority rate 1/3 too). The binomial standard error over 3000
    # test labels is 0.86 points, so 3 points is a 3.5σ bound. Scoring the probe on the
    # rows it was trained on would not pass: after these 10 epochs it has memorised
    # enough noise to reach ~37 % there.
    assert np.bincount(y_test).tolist() == [1000, 1000, 1000]
    assert result["chance"] == pytest.approx(1 / 3)
    assert abs(result["accuracy"] - result["chance"]) < 0.03


def test_probe_is_deterministic_for_a_seed():
    (x_train, y_train), (x_test, y_test) = linear_task(300, 200)
    runs = [probes.train_probe(x_train, y_train, x_test, y_test, 4, epochs=2, seed=s,
                               learning_rate=1e-3, batch_size=32)
            for s in (3, 3)]
    assert runs[0] == runs[1]


def test_standardize_is_off_unless_asked_for():
    # Features far from zero mean and unit scale: standardize=True must give exactly what
    # training on the centred, scaled set gives, and the default must not scale.
    (x_train, y_train), (x_test, y_test) = linear_task(300, 200)
    shifted_train, shifted_test = x_train * 3 + 50, x_test * 3 + 50
    kwargs = {"epochs": 2, "learning_rate": 1e-3, "batch_size": 32}
    scaled = probes.train_probe(shifted_train, y_train, shifted_test, y_test, 4,
                                standardize=True, **kwargs)
    mean, std = shifted_train.mean(0), shifted_train.std(0)
    manual = probes.train_probe((shifted_train - mean) / std, y_train,
                                (shifted_test - mean) / std, y_test, 4, **kwargs)
    raw = probes.train_probe(shifted_train, y_train, shifted_test, y_test, 4, **kwargs)
    assert scaled["accuracy"] == pytest.approx(manual["accuracy"], abs=1e-3)
    assert raw != scaled


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "train_labels": a["train_labels"][:-1]},
     "train set: 10 feature rows but 9 labels"),
    (lambda a: {**a, "test_labels": np.array([0, 1, 3, 0, 1])},
     r"test labels \[3\] are outside 0..2"),
    (lambda a: {**a, "train_labels": a["train_labels"] - 1},
     r"train labels \[-1\] are outside 0..2"),
    (lambda a: {**a, "test_features": np.zeros((5, 4), np.float32)},
     "train features have 3 columns but test features have 4"),
    (lambda a: {**a, "train_features": np.zeros(10, np.float32)},
     r"train features must be \[N, F\]"),
    (lambda a: {**a, "train_labels": np.full(10, 0.5)}, "integer class indices"),
    (lambda a: {**a, "num_classes": 1}, "num_classes must be an integer ≥ 2"),
])
def test_train_probe_refuses_bad_inputs(change, message):
    good = {"train_features": np.zeros((10, 3), np.float32),
            "train_labels": np.arange(10) % 3,
            "test_features": np.zeros((5, 3), np.float32),
            "test_labels": np.arange(5) % 3,
            "num_classes": 3}
    with pytest.raises(ValueError, match=message):
        probes.train_probe(**change(good), epochs=1)


# ------------------------------------------------------------------ tasks and labels


def test_task_labels_map_shapestacks_values_to_classes():
    batch = {"stable": np.array([0, 1, 1]), "height": np.array([2, 4, 6]),
             "view": np.array([1, 9, 16])}
    assert {name: task.num_classes for name, task in probes.TASKS.items()} == \
        {"stability": 2, "height": 5, "view": 16}
    labels = {name: task.label_fn(batch).tolist() for name, task in probes.TASKS.items()}
    assert labels == {"stability": [0, 1, 1], "height": [0, 2, 4], "view": [0, 8, 15]}
    num_classes, label_fn = probes.TASKS["height"]  # a (num_classes, fn) pair
    assert num_classes == 5 and label_fn is probes.TASKS["height"].label_fn


@pytest.mark.parametrize("task, key, values, message", [
    ("height", "height", [2, 7], r"height values \[7\] are outside 2..6"),
    ("height", "height", [1], r"height values \[1\] are outside 2..6"),
    ("view", "view", [0, 3], r"view values \[0\] are outside 1..16"),  # cam_ is 1-based
    ("view", "view", [17], r"view values \[17\] are outside 1..16"),
    ("stability", "stable", [2], r"stable values \[2\] are outside 0..1"),
])
def test_task_labels_refuse_values_out_of_range(task, key, values, message):
    with pytest.raises(ValueError, match=message):
        probes.TASKS[task].label_fn({key: np.array(values)})


def test_a_dataset_without_labels_is_refused_by_name():
    with pytest.raises(ValueError, match="no 'view' feature, so it has no 'view' labels"):
        probes.TASKS["view"].label_fn({"image": np.zeros((1, 4, 4, 3))})


def test_unknown_tasks_and_missing_labels_are_refused():
    x, labels = np.zeros((4, 2), np.float32), {"height": np.zeros(4, np.int64)}
    with pytest.raises(ValueError, match=r"unknown probe task\(s\) \['colour'\]"):
        probes.run_probes((x, labels), (x, labels), tasks=["colour"])
    with pytest.raises(ValueError, match="the train set has no 'view' labels"):
        probes.run_probes((x, labels), (x, labels), tasks=["view"])


# ------------------------------------------------------------------ collect_features


class MeanColour:
    """Stand-in with the model interface: features = mean RGB and the pixel count above
    0.5 in channel 0, so a row can be traced back to its image."""

    image_size = 32

    def features(self, images):
        return tf.concat([tf.reduce_mean(images, axis=[1, 2]),
                          tf.reduce_sum(tf.cast(images[..., :1] > 0.5, tf.float32),
                                        axis=[1, 2])], axis=1)


def raw_examples(data_dir, split):
    builder = shapestacks.Builder(data_dir=data_dir)
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_collect_features_reads_images_and_all_three_labels(shapestacks_dir):
    model, done = MeanColour(), []
    features, labels = probes.collect_features(
        model, "shapestacks", 32, "train", data_dir=shapestacks_dir, batch_size=3,
        progress=done.append)
    assert features.dtype == np.float32 and features.shape == (4, 4)
    assert done == [3, 4]  # a full batch, then the remainder
    assert sorted(labels) == ["height", "stability", "view"]
    # The dummy train split: h=2 stable and h=4 unstable towers, each seen from cam_1 and
    # cam_2 -> stability (1, 0), height label h - 2 (0, 2), view label cam - 1 (0, 1).
    triples = sorted(zip(labels["stability"], labels["height"], labels["view"], strict=True))
    assert triples == [(0, 2, 0), (0, 2, 1), (1, 0, 0), (1, 0, 1)]
    for values in labels.values():
        assert values.dtype == np.int64 and values.shape == (4,)

    # Row by row the same examples as the builder's own records, in file order.
    raw = raw_examples(shapestacks_dir, "train")
    assert [int(e["stable"]) for e in raw] == labels["stability"].tolist()
    assert [int(e["height"]) - 2 for e in raw] == labels["height"].tolist()
    assert [int(e["view"]) - 1 for e in raw] == labels["view"].tolist()
    # The dummy renders paint block k as 40·k in red on a dark background, so taller
    # towers have more bright-red pixels: the feature rows follow the labels.
    red_pixels = features[:, 3]
    tall = labels["height"] == 2
    assert red_pixels[tall].min() > red_pixels[~tall].max()


def test_collect_features_limits_examples_and_tasks(shapestacks_dir):
    features, labels = probes.collect_features(
        MeanColour(), "shapestacks", 32, "test", data_dir=shapestacks_dir,
        max_examples=1, tasks=["view"])
    assert features.shape == (1, 4) and list(labels) == ["view"]
    assert labels["view"].tolist() in ([0], [1])


def test_collect_features_refuses_a_size_the_model_does_not_take(shapestacks_dir):
    with pytest.raises(ValueError, match="the model takes 32×32 images but image_size=64"):
        probes.collect_features(MeanColour(), "shapestacks", 64, "test",
                                data_dir=shapestacks_dir)


def test_collect_features_refuses_a_dataset_without_labels():
    class Synthetic(MeanColour):
        image_size = 16

    with pytest.raises(ValueError, match="no 'stable' feature"):
        probes.collect_features(Synthetic(), "synthetic", 16, "test", max_examples=2)


def test_run_probes_end_to_end_on_collected_features(shapestacks_dir):
    train = probes.collect_features(MeanColour(), "shapestacks", 32, "train",
                                    data_dir=shapestacks_dir)
    test = probes.collect_features(MeanColour(), "shapestacks", 32, "test",
                                   data_dir=shapestacks_dir)
    results = probes.run_probes(train, test, epochs=1)
    assert sorted(results) == ["height", "stability", "view"]
    for result in results.values():
        assert set(result) == {"accuracy", "train_accuracy", "chance"}
        assert 0.0 <= result["accuracy"] <= 1.0
    # The dummy test split is one stable h=5 tower from two views.
    assert results["stability"]["chance"] == 1.0
    assert results["height"]["chance"] == 1.0
    assert results["view"]["chance"] == 0.5

"""Segmentation metrics on cases small enough to compute by hand, and streamed over a
dataset by a model (genesis_tf.metrics.segmentation)."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.metrics import adjusted_rand_index, foreground_ari, segmentation_covering
from genesis_tf.metrics.segmentation import (
    RunningMean,
    segmentation_batch_scores,
    segmentation_metrics,
)
from genesis_tf.models import SceneOutput


def test_ari_is_one_for_the_same_partition_under_renaming():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    assert adjusted_rand_index(labels, (labels + 1) * 7) == pytest.approx(1.0)


def test_ari_hand_computed_split():
    # Contingency [[2,0,0],[0,1,1]]: index 1, rows 2, cols 1, pairs 6 -> expected 1/3,
    # max 3/2, ARI = (1 - 1/3) / (3/2 - 1/3) = 4/7.
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)


def test_ari_is_negative_for_anti_correlated_labelings():
    # Every same-cluster pair is split and vice versa: index 0 < expected.
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)


def test_foreground_ari_ignores_background_pixels():
    true = np.array([[[0, 0, 1, 1], [0, 0, 2, 2]]])
    pred = np.array([[[3, 4, 5, 5], [6, 7, 8, 8]]])  # background shattered, objects right
    mean, per_image = foreground_ari(true, pred)
    assert mean == pytest.approx(1.0)
    assert per_image.shape == (1,)


def test_foreground_ari_skips_images_without_foreground():
    true = np.stack([np.zeros((2, 2), int), np.array([[1, 1], [2, 2]])])
    pred = np.stack([np.zeros((2, 2), int), np.array([[0, 0], [0, 1]])])
    mean, per_image = foreground_ari(true, pred)
    assert np.isnan(per_image[0])
    # Foreground pixels: true [1,1,2,2], pred [0,0,0,1] -> contingency [[2,0],[1,1]]:
    # index 1, rows 2, cols 3, expected 1, max 2.5 -> ARI 0.
    assert per_image[1] == pytest.approx(0.0)
    assert mean == pytest.approx(0.0)


def test_segmentation_covering_hand_computed():
    true = np.array([[1, 1, 0, 2], [1, 1, 0, 2]])
    pred = np.array([[5, 5, 7, 7], [5, 5, 7, 7]])
    # Object 1 (4 px) is matched exactly (IoU 1); object 2 (2 px) best by segment 7,
    # which also holds the 2 background pixels (IoU 2/4).
    scores = segmentation_covering(true, pred)
    assert scores["sc"] == pytest.approx((4 * 1.0 + 2 * 0.5) / 6)
    assert scores["msc"] == pytest.approx((1.0 + 0.5) / 2)


def test_segmentation_covering_penalises_merging_objects():
    true = np.array([[1, 1, 2, 2]])
    merged = np.zeros((1, 4), int)
    assert segmentation_covering(true, merged)["msc"] == pytest.approx(0.5)
    assert segmentation_covering(true, true)["msc"] == pytest.approx(1.0)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        segmentation_covering(np.zeros((2, 3, 3), int), np.zeros((2, 3, 4), int))


# ------------------------------------------------------------------ streamed scores


def pair_counting_ari(true, pred):
    """ARI from its definition over every pair of pixels (Hubert and Arabie 1985, in the
    pair-count form of Steinley 2004): an implementation independent of the contingency
    table that genesis_tf and DeepMind use. (scikit-learn is not a test dependency: Keras
    imports it whenever it is installed, up to 0.8 s per process.)"""
    true, pred = np.ravel(true), np.ravel(pred)
    i, j = np.triu_indices(len(true), k=1)
    same_true, same_pred = true[i] == true[j], pred[i] == pred[j]
    a = np.sum(same_true & same_pred)
    b = np.sum(same_true & ~same_pred)
    c = np.sum(~same_true & same_pred)
    d = np.sum(~same_true & ~same_pred)
    denominator = (a + b) * (b + d) + (a + c) * (c + d)
    return 1.0 if denominator == 0 else 2.0 * (a * d - b * c) / denominator


def test_pair_counting_ari_on_hand_computed_cases():
    assert pair_counting_ari([0, 0, 1, 1], [5, 5, 2, 2]) == 1.0
    # Contingency table [[1, 1, 0], [0, 1, 1]]: Σ C(n_ij, 2) = 0, rows Σ C(a_i, 2) = 2,
    # columns Σ C(b_j, 2) = 1, expected 2·1 / C(4, 2) = 1/3, maximum (2 + 1) / 2:
    # ARI = (0 − 1/3) / (3/2 − 1/3) = −2/7.
    assert pair_counting_ari([0, 0, 1, 1], [0, 1, 1, 2]) == pytest.approx(-2 / 7)


def test_ari_equals_pair_counting_per_image_on_random_label_images():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, size=(12, 9, 9))
    pred = rng.integers(0, 5, size=(12, 9, 9))
    pred[:4] = true[:4] * 3 + 1  # some images agree up to renaming
    true[5] = 0  # no foreground: foreground ARI undefined
    scores = segmentation_batch_scores(true, pred)
    for i in range(len(true)):
        fg = true[i] > 0
        assert scores["ari"][i] == pytest.approx(
            pair_counting_ari(true[i], pred[i]), abs=1e-12)
        if fg.any():
            assert scores["fg_ari"][i] == pytest.approx(
                pair_counting_ari(true[i][fg], pred[i][fg]), abs=1e-12)
        else:
            assert np.isnan(scores["fg_ari"][i])
    assert np.allclose(scores["fg_ari"][:4], 1.0)


def test_covering_penalises_what_foreground_ari_does_not():
    # Background 0 and two objects; 2 rows x 6 columns.
    true = np.array([[[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2]]])
    # Object 1 swallowed by the background's segment: the foreground pixels are still
    # partitioned exactly, so foreground ARI is 1, but object 1's best IoU is 4/8.
    merged = np.array([[[7, 7, 7, 7, 9, 9], [7, 7, 7, 7, 9, 9]]])
    scores = segmentation_batch_scores(true, merged)
    assert scores["fg_ari"][0] == pytest.approx(1.0)
    assert scores["sc"][0] == pytest.approx((4 * 0.5 + 4 * 1.0) / 8)
    assert scores["msc"][0] == pytest.approx((0.5 + 1.0) / 2)
    # Over-segmentation: object 2 split into two segments of 2 pixels (best IoU 2/4).
    split = np.array([[[0, 0, 1, 1, 2, 3], [0, 0, 1, 1, 2, 3]]])
    scores = segmentation_batch_scores(true, split)
    assert scores["sc"][0] == pytest.approx((4 * 1.0 + 4 * 0.5) / 8)
    assert scores["msc"][0] == pytest.approx(0.75)
    assert scores["fg_ari"][0] == pytest.approx(
        pair_counting_ari([1, 1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 2, 3, 2, 3]))


def test_running_mean_and_standard_error_skip_undefined_scores():
    values = np.array([0.2, np.nan, 0.5, 0.9, 0.4, np.nan, 0.7])
    running = RunningMean()
    running.add(values[:3])
    running.add(values[3:])
    defined = values[np.isfinite(values)]
    result = running.result()
    assert result["count"] == 5 and result["skipped"] == 2
    assert result["mean"] == pytest.approx(defined.mean())
    assert result["stderr"] == pytest.approx(defined.std(ddof=1) / np.sqrt(5))


class _Oracle:
    """A stand-in model whose masks are the ground truth of the synthetic scenes: it looks
    each image up (by its bytes) among the scenes it was given."""

    image_size = 16
    num_slots = 4

    def __init__(self, count):
        from genesis_tf import data as data_lib

        scenes = [data_lib.synthetic_scene(i, 16, seed=12345) for i in range(count)]
        self.ids = {s["image"].numpy().tobytes(): s["instance_ids"].numpy() for s in scenes}

    def _log_masks(self, images):
        ids = np.stack([self.ids[image.tobytes()] for image in images.numpy()])
        one_hot = np.moveaxis(np.eye(self.num_slots)[ids], -1, 1)[..., None]
        return np.log(one_hot * 0.96 + 0.01).astype(np.float32)

    def __call__(self, images, training=False, num_slots=None, seed=None):
        log_masks = tf.py_function(self._log_masks, [images], tf.float32)
        return SceneOutput(recon=images, log_masks=log_masks,
                           components=tf.repeat(images[:, None], self.num_slots, axis=1))


def test_streamed_scores_do_not_depend_on_the_batch_size_and_find_a_perfect_model():
    results = []
    for batch_size in (7, 40):
        metrics, first = segmentation_metrics(_Oracle(40), "synthetic", 16, num_images=40,
                                              batch_size=batch_size, keep_first=3)
        results.append(metrics)
        assert first["image"].shape == (3, 16, 16, 3) and len(first["aris"]) == 3
    assert results[0] == results[1]
    assert results[0]["num_images"] == 40
    for name in ("fg_ari", "ari", "sc", "msc"):
        assert results[0][name]["mean"] == pytest.approx(1.0)
        assert results[0][name]["count"] == 40

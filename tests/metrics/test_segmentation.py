"""Segmentation metrics on cases small enough to compute by hand."""
import numpy as np
import pytest

from genesis_tf.metrics import adjusted_rand_index, foreground_ari, segmentation_covering


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

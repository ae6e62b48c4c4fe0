"""The one evaluation forward pass (genesis_tf.metrics.forward): traced once, a fixed seed
per batch, every image once and in file order."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import data as data_lib
from genesis_tf.metrics import forward


class _Recorder:
    """A stand-in model: returns the seed it was called with (one per image) and the
    images' means, and counts how often its forward was traced."""

    image_size = 16

    def __init__(self):
        self.traces, self.num_slots_seen = 0, []

    def __call__(self, images, training=None, num_slots=None, seed=None):
        self.traces += 1
        self.num_slots_seen.append((training, num_slots))
        count = tf.shape(images)[0]
        return tf.fill([count], seed), tf.reduce_mean(images, axis=[1, 2, 3])

    def features(self, images, **kwargs):
        self.num_slots_seen.append(tuple(kwargs))
        return tf.reduce_mean(images, axis=[1, 2])


def test_every_batch_gets_seed_plus_its_index_in_one_trace():
    model, done = _Recorder(), []
    outputs = list(forward.forward_batches(model, "synthetic", 16, batch_size=8,
                                           num_images=32, num_slots=2, seed=5,
                                           progress=done.append))
    assert len(outputs) == 4 and done == [8, 16, 24, 32]
    for index, (batch, (seeds, means)) in enumerate(outputs):
        assert seeds.numpy().tolist() == [5 + index] * 8
        np.testing.assert_allclose(means, tf.reduce_mean(batch["image"], axis=[1, 2, 3]))
    assert model.traces == 1  # equal batches, the seed a tensor: no retracing
    assert model.num_slots_seen == [(False, 2)]
    # The images are the evaluation images, in file order.
    expected = [b["image"].numpy() for b in data_lib.eval_dataset("synthetic", 16, 8,
                                                                  max_examples=32)]
    np.testing.assert_array_equal(np.concatenate([b["image"] for b, _ in outputs]),
                                  np.concatenate(expected))


def test_a_smaller_last_batch_is_counted_and_features_skip_an_unset_num_slots():
    model, done = _Recorder(), []
    outputs = list(forward.forward_batches(model, "synthetic", 16, batch_size=8,
                                           num_images=20, call=forward.features,
                                           progress=done.append))
    assert done == [8, 16, 20]
    assert [o.shape[0] for _, o in outputs] == [8, 8, 4]
    assert set(model.num_slots_seen) == {()}  # num_slots was not passed at all


def test_an_empty_split_is_refused(monkeypatch):
    empty = tf.data.Dataset.from_tensor_slices({"image": tf.zeros([0, 16, 16, 3])}).batch(4)
    monkeypatch.setattr(data_lib, "eval_dataset", lambda *args, **kwargs: empty)
    with pytest.raises(ValueError, match="the test split of synthetic is empty"):
        list(forward.forward_batches(_Recorder(), "synthetic", 16))

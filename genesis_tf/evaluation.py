"""Scores of a model on a dataset split, streamed batch by batch.

Segmentation (GENESIS §4.2, appendix C): foreground ARI (ground-truth background left
out), ARI over all pixels, segmentation covering SC (pixel-weighted) and mSC (unweighted)
of the ground-truth foreground objects by the argmax of the predicted masks. Each is a
per-image score; the result is its mean and standard error over the images where it is
defined (an image without foreground has no foreground ARI or covering and is counted as
skipped). Memory is constant in the number of images: only running sums are kept.

Used by the demo, genesis_tf.evaluate and benchmarks/learning_curve.py.
"""
import math

import numpy as np

SEGMENTATION_METRICS = ("fg_ari", "ari", "sc", "msc")


class RunningMean:
    """Mean and standard error of a stream of per-image scores; NaN scores are counted
    as skipped (the score is undefined for that image)."""

    def __init__(self):
        self.count, self.skipped, self._sum, self._sum_sq = 0, 0, 0.0, 0.0

    def add(self, values):
        values = np.asarray(values, np.float64).ravel()
        defined = values[np.isfinite(values)]
        self.skipped += int(values.size - defined.size)
        self.count += int(defined.size)
        self._sum += float(defined.sum())
        self._sum_sq += float((defined**2).sum())

    @property
    def mean(self):
        return self._sum / self.count if self.count else float("nan")

    @property
    def stderr(self):
        """Standard error of the mean (sample standard deviation / √n)."""
        if self.count < 2:
            return float("nan")
        variance = (self._sum_sq - self.count * self.mean**2) / (self.count - 1)
        return math.sqrt(max(variance, 0.0) / self.count)

    def result(self):
        return {"mean": self.mean, "stderr": self.stderr, "count": self.count,
                "skipped": self.skipped}


def segmentation_batch_scores(true_ids, predicted):
    """Per-image scores {name: [B]} for integer label maps [B, H, W] (0 = background)."""
    from genesis_tf.metrics import adjusted_rand_index, foreground_ari, segmentation_covering

    _, fg_ari = foreground_ari(true_ids, predicted)
    covering = segmentation_covering(true_ids, predicted)
    all_pixels = [adjusted_rand_index(t, p) for t, p in zip(true_ids, predicted, strict=True)]
    return {"fg_ari": fg_ari, "ari": np.asarray(all_pixels), "sc": covering["sc_per_image"],
            "msc": covering["msc_per_image"]}


def predicted_segmentation(out):
    """The argmax over slots of a SceneOutput's log masks: int [B, H, W]."""
    return np.asarray(out.log_masks)[..., 0].argmax(axis=1)


def segmentation_metrics(model, dataset, image_size, num_images=None, split="test",
                         data_dir=None, batch_size=32, num_slots=None, seed=0,
                         keep_first=0, progress=None):
    """Streams `num_images` (None: the whole split) through the model.

    Returns (metrics, first): metrics = {name: {'mean', 'stderr', 'count', 'skipped'}}
    for SEGMENTATION_METRICS plus 'num_images'; first = the first `keep_first` images with
    their SceneOutput and foreground ARIs ({'image', 'out', 'aris'}) for figures, or None.
    The posterior is sampled (as the reference evaluates), with a fixed seed per batch.
    """
    import tensorflow as tf

    from genesis_tf import data as data_lib

    forward = tf.function(
        lambda images, batch_seed: model(images, training=False, num_slots=num_slots,
                                         seed=batch_seed), reduce_retracing=True)
    running = {name: RunningMean() for name in SEGMENTATION_METRICS}
    first, done = None, 0
    batches = data_lib.eval_dataset(dataset, image_size, batch_size, split=split,
                                    data_dir=data_dir, max_examples=num_images)
    for index, batch in enumerate(batches):
        if "instance_ids" not in batch:
            raise ValueError(f"{dataset} has no ground-truth instance masks, so it has no "
                             "segmentation metrics (Multi-dSprites, ShapeStacks and the "
                             "synthetic scenes have them)")
        out = forward(batch["image"], tf.constant(seed + index, tf.int32))
        true_ids = batch["instance_ids"].numpy()
        scores = segmentation_batch_scores(true_ids, predicted_segmentation(out))
        for name, values in scores.items():
            running[name].add(values)
        if first is None and keep_first:
            first = {"image": batch["image"][:keep_first].numpy(),
                     "out": type(out)(*(None if t is None else t[:keep_first] for t in out)),
                     "aris": scores["fg_ari"][:keep_first]}
        done += len(true_ids)
        if progress is not None:
            progress(done)
    if not done:
        raise ValueError(f"the {split} split of {dataset} is empty")
    metrics = {name: r.result() for name, r in running.items()}
    metrics["num_images"] = done
    return metrics, first


def segmentation_scores(model, dataset, image_size, num_images, split="test",
                        data_dir=None, batch_size=32, keep_first=8):
    """The demo's short form: ({'fg_ari', 'sc', 'msc': means, 'num_images'}, first)."""
    metrics, first = segmentation_metrics(model, dataset, image_size, num_images, split=split,
                                          data_dir=data_dir, batch_size=batch_size,
                                          keep_first=keep_first)
    scores = {name: metrics[name]["mean"] for name in ("fg_ari", "sc", "msc")}
    scores["num_images"] = metrics["num_images"]
    return scores, first

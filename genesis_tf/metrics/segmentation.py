"""Segmentation metrics: foreground ARI and segmentation covering (SC, mSC).

All functions take integer label maps for one image or a batch: ground truth
``true_ids`` [..., H, W] with 0 = background, and predicted ``pred_ids`` [..., H, W]
(for the models, the argmax over slots of the log masks [B, K, H, W, 1]).

* ARI (Hubert & Arabie 1985) compares two partitions of the same pixels, corrected for
  chance; following Greff et al. (2019) and the GENESIS paper it is computed only on the
  pixels of ground-truth foreground objects.
* Segmentation covering (Arbeláez et al. 2010) of the ground-truth foreground segments
  R by the predicted segments R': SC = Σ_R |R| max_R' IoU(R, R') / Σ_R |R| (pixel
  weighted); mSC is the unweighted mean of max_R' IoU(R, R') over non-empty R. IoU is
  taken over the whole image, so a predicted segment that also covers background is
  penalised.
Images without any foreground pixel have no defined score and are skipped in batch means.

`segmentation_metrics` streams a dataset split through a model (the shared forward pass
of genesis_tf.metrics.forward) and keeps, per score, the mean and standard error over
the images where it is defined (`RunningMean`): memory is constant in the number of
images. genesis_tf.metrics.suite.SegmentationEvaluator is its evaluator.
"""
import math

import numpy as np

SEGMENTATION_METRICS = ("fg_ari", "ari", "sc", "msc")


def _pair_counts(n):
    n = np.asarray(n, dtype=np.float64)
    return n * (n - 1.0) / 2.0


def adjusted_rand_index(true_ids, pred_ids):
    """ARI between two labelings of the same points (1-D or any shape, flattened).

    Returns 1.0 when both labelings are identical up to renaming, about 0 for chance
    agreement. When both put every point in one cluster the index is defined as 1.
    """
    true_ids = np.asarray(true_ids).ravel()
    pred_ids = np.asarray(pred_ids).ravel()
    if true_ids.shape != pred_ids.shape:
        raise ValueError(f"label maps differ in size: {true_ids.shape} vs {pred_ids.shape}")
    n = true_ids.size
    if n < 2:
        return 1.0
    _, t = np.unique(true_ids, return_inverse=True)
    _, p = np.unique(pred_ids, return_inverse=True)
    contingency = np.zeros((t.max() + 1, p.max() + 1), dtype=np.int64)
    np.add.at(contingency, (t, p), 1)
    index = _pair_counts(contingency).sum()
    rows = _pair_counts(contingency.sum(axis=1)).sum()
    cols = _pair_counts(contingency.sum(axis=0)).sum()
    expected = rows * cols / _pair_counts(n)
    maximum = 0.5 * (rows + cols)
    if maximum == expected:  # Both trivial (one cluster each, or all singletons).
        return 1.0
    return float((index - expected) / (maximum - expected))


def foreground_ari(true_ids, pred_ids):
    """Mean over images of the ARI restricted to ground-truth foreground pixels.

    Args:
      true_ids: int [H, W] or [B, H, W], 0 = background.
      pred_ids: int, same shape.
    Returns:
      (mean ARI over images with foreground, per-image ARIs with NaN where undefined).
    """
    true_ids, pred_ids = _as_batch(true_ids, pred_ids)
    scores = np.full(len(true_ids), np.nan)
    for i, (t, p) in enumerate(zip(true_ids, pred_ids, strict=True)):
        fg = t > 0
        if fg.any():
            scores[i] = adjusted_rand_index(t[fg], p[fg])
    return _nanmean(scores), scores


def segmentation_covering(true_ids, pred_ids):
    """Pixel-weighted (SC) and unweighted (mSC) covering of ground-truth foreground.

    Returns:
      dict with 'sc' and 'msc' (means over images with foreground) and per-image arrays
      'sc_per_image', 'msc_per_image' (NaN where an image has no foreground).
    """
    true_ids, pred_ids = _as_batch(true_ids, pred_ids)
    sc = np.full(len(true_ids), np.nan)
    msc = np.full(len(true_ids), np.nan)
    for i, (t, p) in enumerate(zip(true_ids, pred_ids, strict=True)):
        objects = [o for o in np.unique(t) if o != 0]
        if not objects:
            continue
        pred_segments = [p == q for q in np.unique(p)]
        sizes, best = [], []
        for o in objects:
            region = t == o
            ious = [
                np.logical_and(region, s).sum() / np.logical_or(region, s).sum()
                for s in pred_segments
            ]
            sizes.append(region.sum())
            best.append(max(ious))
        sizes, best = np.asarray(sizes, np.float64), np.asarray(best)
        sc[i] = float((sizes * best).sum() / sizes.sum())
        msc[i] = float(best.mean())
    return {
        "sc": _nanmean(sc),
        "msc": _nanmean(msc),
        "sc_per_image": sc,
        "msc_per_image": msc,
    }


def _as_batch(true_ids, pred_ids):
    true_ids, pred_ids = np.asarray(true_ids), np.asarray(pred_ids)
    if true_ids.shape != pred_ids.shape:
        raise ValueError(
            f"true_ids {true_ids.shape} and pred_ids {pred_ids.shape} must have the same "
            "shape [B, H, W] or [H, W]; squeeze a trailing channel axis and take the "
            "argmax over slots of the log masks first"
        )
    if true_ids.ndim == 2:
        true_ids, pred_ids = true_ids[None], pred_ids[None]
    if true_ids.ndim != 3:
        raise ValueError(f"expected label maps [B, H, W] or [H, W], got {true_ids.shape}")
    return true_ids, pred_ids


def _nanmean(values):
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


# ---------------------------------------------------------------------------------------
# Streamed over a dataset split
# ---------------------------------------------------------------------------------------


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
    from genesis_tf.metrics import forward

    running = {name: RunningMean() for name in SEGMENTATION_METRICS}
    first, done = None, 0
    for batch, out in forward.forward_batches(
            model, dataset, image_size, split=split, data_dir=data_dir,
            batch_size=batch_size, num_images=num_images, num_slots=num_slots, seed=seed,
            progress=progress):
        if "instance_ids" not in batch:
            raise ValueError(f"{dataset} has no ground-truth instance masks, so it has no "
                             "segmentation metrics (Multi-dSprites, ShapeStacks and the "
                             "synthetic scenes have them)")
        true_ids = batch["instance_ids"].numpy()
        scores = segmentation_batch_scores(true_ids, predicted_segmentation(out))
        for name, values in scores.items():
            running[name].add(values)
        if first is None and keep_first:
            first = {"image": batch["image"][:keep_first].numpy(),
                     "out": type(out)(*(None if t is None else t[:keep_first] for t in out)),
                     "aris": scores["fg_ari"][:keep_first]}
        done += len(true_ids)
    metrics = {name: r.result() for name, r in running.items()}
    metrics["num_images"] = done
    return metrics, first


def segmentation_scores(model, dataset, image_size, num_images, split="test",
                        data_dir=None, batch_size=32, keep_first=8):
    """The short form: ({'fg_ari', 'sc', 'msc': means, 'num_images'}, first)."""
    metrics, first = segmentation_metrics(model, dataset, image_size, num_images, split=split,
                                          data_dir=data_dir, batch_size=batch_size,
                                          keep_first=keep_first)
    scores = {name: metrics[name]["mean"] for name in ("fg_ari", "sc", "msc")}
    scores["num_images"] = metrics["num_images"]
    return scores, first

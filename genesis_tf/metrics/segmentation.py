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

Two mask sets (GENESIS-V2). A model whose SceneOutput has ``ic_sbp_log_masks`` is scored
on both of its mask sets (`mask_sets`), named as the reference names them, in our keys:
the plain keys (``fg_ari``, ``ari``, ``sc``, ``msc``) score the IC-SBP masks, inferred
from the pixel embeddings (the reference's ``ari_fg``, ``msc_fg``: what its tables
report), and the same keys with the suffix ``_decoded`` (``fg_ari_decoded``, ...) score
the decoded masks, the softmax of the decoder's mask logits that give the reconstruction
(the reference's ``*_r``). ``_decoded`` rather than the reference's ``_r`` so that a key
read alone says which masks it scored; each of these results also carries 'masks', the
mask set's description, which the printed table and the results file show. Every other
model has one mask set, its ``log_masks``: plain keys only and no 'masks', as before.
"""
import math
from typing import Any, NamedTuple

import numpy as np

SEGMENTATION_METRICS = ("fg_ari", "ari", "sc", "msc")
DECODED_SUFFIX = "_decoded"  # the keys of GENESIS-V2's decoded masks (the reference's *_r)
KEY_SUFFIXES = ("", DECODED_SUFFIX)  # of every mask set mask_sets can give, in its order
IC_SBP_MASKS = "IC-SBP (inferred from the pixel embeddings)"
DECODED_MASKS = "decoded (softmax of the decoder's mask logits)"


class MaskSet(NamedTuple):
    """One set of masks of a SceneOutput that segmentation scores."""

    suffix: str  # appended to the metric keys
    label: str | None  # short name for figures ('IC-SBP', 'decoded'); None: the only set
    description: str | None  # what the masks are, for tables and results; None likewise
    log_masks: Any  # [B, K, H, W, 1]


def mask_sets(out):
    """The mask sets of a SceneOutput that segmentation scores: GENESIS-V2's IC-SBP masks
    (plain keys) and its decoded masks (keys + DECODED_SUFFIX) when ``out`` has
    ``ic_sbp_log_masks``, else only ``log_masks`` (plain keys, no label)."""
    ic_sbp = getattr(out, "ic_sbp_log_masks", None)
    if ic_sbp is None:
        return [MaskSet("", None, None, out.log_masks)]
    return [MaskSet("", "IC-SBP", IC_SBP_MASKS, ic_sbp),
            MaskSet(DECODED_SUFFIX, "decoded", DECODED_MASKS, out.log_masks)]


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


def predicted_segmentation(out, log_masks=None):
    """The argmax over slots of `log_masks` [B, K, H, W, 1] (default: the SceneOutput's
    log_masks): int [B, H, W]."""
    log_masks = out.log_masks if log_masks is None else log_masks
    return np.asarray(log_masks)[..., 0].argmax(axis=1)


def foreground_aris(true_ids, out):
    """Per-image foreground ARIs [B] of a SceneOutput's masks (NaN where undefined); for
    two mask sets, {label: [B]} ({'IC-SBP': ..., 'decoded': ...}), as figures take them."""
    aris = {s.label: foreground_ari(true_ids, predicted_segmentation(out, s.log_masks))[1]
            for s in mask_sets(out)}
    return aris[None] if None in aris else aris


def segmentation_metrics(model, dataset, image_size, num_images=None, split="test",
                         data_dir=None, batch_size=32, num_slots=None, seed=0,
                         keep_first=0, progress=None):
    """Streams `num_images` (None: the whole split) through the model.

    Returns (metrics, first): metrics = {name: {'mean', 'stderr', 'count', 'skipped'}}
    for SEGMENTATION_METRICS (and, for two mask sets, the same + DECODED_SUFFIX, each
    with 'masks': the set's description) plus 'num_images'; first = the first
    `keep_first` images with their SceneOutput and foreground ARIs ({'image', 'out',
    'aris'}, aris as foreground_aris gives them) for figures, or None. The posterior is
    sampled (as the reference evaluates), with a fixed seed per batch.
    """
    from genesis_tf.metrics import forward

    running, described = {}, {}  # name -> RunningMean, name -> its masks' description
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
        aris = {}
        for mask_set in mask_sets(out):
            predicted = predicted_segmentation(out, mask_set.log_masks)
            scores = segmentation_batch_scores(true_ids, predicted)
            for name, values in scores.items():
                running.setdefault(name + mask_set.suffix, RunningMean()).add(values)
                described[name + mask_set.suffix] = mask_set.description
            aris[mask_set.label] = scores["fg_ari"][:keep_first]
        if first is None and keep_first:
            first = {"image": batch["image"][:keep_first].numpy(),
                     "out": type(out)(*(None if t is None else t[:keep_first] for t in out)),
                     "aris": aris[None] if None in aris else aris}
        done += len(true_ids)
    metrics = {name: _described(r.result(), described[name]) for name, r in running.items()}
    metrics["num_images"] = done
    return metrics, first


def _described(result, description):
    return result if description is None else dict(result, masks=description)


def segmentation_scores(model, dataset, image_size, num_images, split="test",
                        data_dir=None, batch_size=32, keep_first=8):
    """The short form: ({'fg_ari', 'sc', 'msc': means, 'num_images'}, first)."""
    metrics, first = segmentation_metrics(model, dataset, image_size, num_images, split=split,
                                          data_dir=data_dir, batch_size=batch_size,
                                          keep_first=keep_first)
    scores = {name: metrics[name]["mean"] for name in ("fg_ari", "sc", "msc")}
    scores["num_images"] = metrics["num_images"]
    return scores, first

"""Fréchet Inception Distance (FID), the sample-quality metric of GENESIS Table 2.

FID compares two image sets through the mean and covariance of their Inception pool_3
features: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)). Numbers are only comparable with
the literature when the features come from the same network, so this module runs the
standard FID network, TensorFlow's frozen Inception graph of 2015-12-05 (the one behind
TTUR's fid.py, TF-GAN and pytorch-fid), and preprocesses images the way pytorch-fid does
(it is what GENESIS used): 8-bit images, bilinear resize to 299x299, scaled to [-1, 1].

Statistics are accumulated in a streaming way (constant memory in the number of images),
so FID over 10,000 generated images never holds all features or images at once.

Nothing is downloaded: the graph file has to be supplied (see `load_inception`).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from scipy import linalg

from genesis_tf.metrics import inception_file
from genesis_tf.metrics.inception_file import (  # noqa: F401  (fid.* for callers)
    INCEPTION_ENV_VAR,
    INCEPTION_FILENAME,
    INCEPTION_URL,
)

# `Mul:0` is the graph's own input after its JPEG decoding, resize and (x - 128) / 128
# normalisation, i.e. a [N, 299, 299, 3] image batch in [-1, 1]; `pool_3:0` is the 2048-d
# average pool before the classifier. Same names as TF-GAN (INCEPTION_INPUT,
# INCEPTION_FINAL_POOL) and TensorFlow's image_retraining/retrain.py.
INPUT_TENSOR = "Mul:0"
FEATURE_TENSOR = "pool_3:0"
IMAGE_SIZE = 299

# Largest imaginary part tolerated on the diagonal of sqrtm(S1 S2) before it is treated as a
# real error instead of round-off (the threshold TTUR/pytorch-fid use).
_MAX_IMAGINARY = 1e-3

Network = Callable[[tf.Tensor], np.ndarray]
Progress = Callable[[int], None]


# ---------------------------------------------------------------------------------------
# Fréchet distance between Gaussians
# ---------------------------------------------------------------------------------------


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2)).

    If sqrtm of the product is not finite (near-singular covariances, e.g. fewer images
    than feature dimensions), `eps` * I is added to both covariances and it is retried. A
    negligible imaginary part of sqrtm (round-off) is dropped; a large one raises.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(
            f"frechet_distance: means must be vectors of the same length, got shapes "
            f"{mu1.shape} and {mu2.shape}"
        )
    dim = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (dim, dim):
            raise ValueError(
                f"frechet_distance: {name} must be a ({dim}, {dim}) covariance matching the "
                f"means, got shape {sigma.shape}"
            )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"frechet_distance: {name} contains NaN or infinity")

    # scipy warns about singular matrices itself; the finiteness check below is what
    # decides whether the regularised retry is needed, so its warning is only noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        offset = eps * np.eye(dim)
        sigma1, sigma2 = sigma1 + offset, sigma2 + offset
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            raise ValueError(
                f"frechet_distance: sqrtm(sigma1 sigma2) is not finite even after adding "
                f"{eps} * I to both covariances; check the covariances for NaN or huge values"
            )
    if np.iscomplexobj(covmean):
        largest = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if largest > _MAX_IMAGINARY:
            raise ValueError(
                f"frechet_distance: sqrtm(sigma1 sigma2) has an imaginary diagonal part of "
                f"{largest:.3g}; the covariances are probably not positive semi-definite"
            )
        covmean = covmean.real

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


# ---------------------------------------------------------------------------------------
# Streaming feature statistics
# ---------------------------------------------------------------------------------------


class FeatureStatistics:
    """Streaming mean and covariance of feature vectors, memory constant in their number.

    `update` adds a [n, D] batch to float64 running sums (count, sum, sum of outer
    products); `mean` and `covariance` (unbiased, like np.cov(features, rowvar=False)) are
    read off at any time. The sums are of features minus a fixed shift (the first batch's
    mean) so that the final `S2 - n mu mu^T` does not cancel catastrophically when the mean
    is large compared with the spread.
    """

    def __init__(self) -> None:
        self._count = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    @property
    def count(self) -> int:
        """Number of feature vectors seen so far."""
        return self._count

    @property
    def dim(self) -> int | None:
        """Feature dimension, or None before the first non-empty update."""
        return None if self._shift is None else int(self._shift.shape[0])

    def update(self, features) -> FeatureStatistics:
        """Add a [n, D] batch of features (any float dtype, NumPy or TF). Returns self."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise ValueError(
                f"FeatureStatistics.update expects a [n, D] array, got shape {features.shape}"
            )
        if features.shape[0] == 0:
            return self
        if self._shift is None:
            self._shift = features.mean(axis=0)
            dim = features.shape[1]
            self._sum = np.zeros(dim, dtype=np.float64)
            self._outer = np.zeros((dim, dim), dtype=np.float64)
        elif features.shape[1] != self._shift.shape[0]:
            raise ValueError(
                f"FeatureStatistics.update: got {features.shape[1]}-d features after "
                f"{self._shift.shape[0]}-d ones; all batches must come from the same network"
            )
        if not np.all(np.isfinite(features)):
            raise ValueError("FeatureStatistics.update: features contain NaN or infinity")
        centred = features - self._shift
        self._count += features.shape[0]
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        return self

    def _require(self, minimum: int, what: str) -> None:
        if self._count < minimum:
            raise ValueError(
                f"FeatureStatistics: the {what} needs at least {minimum} sample(s), got "
                f"{self._count}; feed more images"
            )

    def mean(self) -> np.ndarray:
        """Mean feature vector [D], float64."""
        self._require(1, "mean")
        return self._shift + self._sum / self._count

    def covariance(self) -> np.ndarray:
        """Unbiased (N - 1) covariance [D, D], float64, equal to np.cov(rowvar=False)."""
        self._require(2, "covariance")
        centred_mean = self._sum / self._count
        scatter = self._outer - self._count * np.outer(centred_mean, centred_mean)
        return scatter / (self._count - 1)

    def frechet_distance(self, other: FeatureStatistics) -> float:
        """FID between these statistics and `other`'s."""
        return frechet_distance(self.mean(), self.covariance(), other.mean(), other.covariance())


# ---------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------


def preprocess(images, rounding: str = "nearest") -> tf.Tensor:
    """Float images in [0, 1], [N, H, W, C] with C in {1, 3}, to Inception input.

    The images first go through 8 bits, as they would when saved to PNG for the reference
    FID scripts: clip to [0, 1] and quantise x * 255 to an integer, with
    `rounding="nearest"` (round half up, e.g. 0.5 -> 128) or `rounding="truncate"` (what
    GENESIS's own np.uint8(255 * x) PNG export does). Then bilinear resize to 299x299
    (tf.image.resize, half-pixel centres like pytorch-fid's align_corners=False) and scale
    the 0..255 values to [-1, 1] with x / 127.5 - 1 (pytorch-fid's 2x - 1). Grey images
    are repeated to 3 channels. Returns a float32 [N, 299, 299, 3] tf.Tensor.
    """
    if rounding not in ("nearest", "truncate"):
        raise ValueError(f"preprocess: rounding must be 'nearest' or 'truncate', got {rounding!r}")
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        raise TypeError(
            f"preprocess expects float images in [0, 1], got dtype {images.dtype.name}; "
            "convert 8-bit images with x / 255 first"
        )
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"preprocess expects [N, H, W, C] images with C = 1 or 3, got shape {images.shape}"
        )
    images = tf.cast(images, tf.float32)
    # A NaN would be cast to an arbitrary 8-bit value and bias the FID silently.
    if not bool(tf.reduce_all(tf.math.is_finite(images))):
        raise ValueError("preprocess: images contain NaN or infinity")
    scaled = tf.clip_by_value(images, 0.0, 1.0) * 255.0
    # floor(x + 0.5) rather than tf.round, whose round-half-to-even is not what image
    # writers do.
    levels = tf.floor(scaled + 0.5) if rounding == "nearest" else tf.floor(scaled)
    if images.shape[-1] == 1:
        levels = tf.repeat(levels, 3, axis=-1)
    resized = tf.image.resize(levels, [IMAGE_SIZE, IMAGE_SIZE], method="bilinear")
    return tf.cast(resized / 127.5 - 1.0, tf.float32)


# ---------------------------------------------------------------------------------------
# The Inception network
# ---------------------------------------------------------------------------------------


class InceptionNetwork:
    """pool_3 features of the frozen 2015-12-05 Inception graph, as a batch callable.

    Call with a [N, 299, 299, 3] float32 batch in [-1, 1] (see `preprocess`); returns an
    [N, 2048] float64 array. Built by `load_inception`.

    The graph runs in a tf.compat.v1.Session on its own tf.Graph, not in a tf.function: it
    uses BatchNormWithGlobalNormalization, an op removed at GraphDef version 9. Importing
    it into a graph lowers that graph's producer version to the file's, so a session
    accepts it, while TF2's function runtime builds kernels at the current version and
    refuses it ("not available in GraphDef version ..."), as tests/metrics/test_fid.py
    checks with a stand-in graph.
    """

    def __init__(self, graph_def: tf.compat.v1.GraphDef, source: str = "<GraphDef>") -> None:
        self.source = source
        graph_def = _without_fixed_shapes(graph_def)
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._images = tf.compat.v1.placeholder(
                tf.float32, [None, IMAGE_SIZE, IMAGE_SIZE, 3], name="fid_images"
            )
            try:
                (self._features,) = tf.compat.v1.import_graph_def(
                    graph_def,
                    input_map={INPUT_TENSOR: self._images},
                    return_elements=[FEATURE_TENSOR],
                    name="inception",
                )
            except (ValueError, TypeError, tf.errors.OpError) as error:
                raise ValueError(
                    f"cannot import the Inception graph {source} with input {INPUT_TENSOR} "
                    f"fed by a [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3] float32 batch: {error}"
                ) from error
        self._session = tf.compat.v1.Session(graph=self._graph)
        last = self._features.shape[-1] if self._features.shape.rank else None
        self.dim: int | None = None if last is None else int(last)

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(
                f"Inception expects [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3] images in [-1, 1] "
                f"(use preprocess), got shape {images.shape}"
            )
        if images.shape[0] == 0:
            return np.zeros((0, self.dim or 0), dtype=np.float64)
        pooled = self._session.run(self._features, {self._images: images})
        # pool_3 is [N, 1, 1, 2048]; the features are its flattened rows.
        return np.asarray(pooled, dtype=np.float64).reshape(images.shape[0], -1)

    def close(self) -> None:
        """Release the session (also happens when the object is garbage collected)."""
        self._session.close()

    def __enter__(self) -> InceptionNetwork:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _without_fixed_shapes(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """Copy of `graph_def` without the `_output_shapes` attributes.

    The 2015 graph records batch-1 shapes for every op in `_output_shapes`, and the
    importer merges those into the inferred static shapes, so everything downstream of a
    [None, ...] input would still claim batch 1 (the problem TTUR's fid.py patches by
    rewriting the shapes after import). Without them, shapes are inferred from the
    placeholder and any batch size is consistent. The batch-1 Reshape after pool_3
    (`pool_3/_reshape`, feeding the softmax) is never run because only pool_3 is fetched.
    """
    stripped = tf.compat.v1.GraphDef()
    stripped.CopyFrom(graph_def)
    for node in stripped.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    return stripped


def load_inception(path: str | os.PathLike | None = None) -> InceptionNetwork:
    """Load the FID Inception network from `classify_image_graph_def.pb`.

    `path` is the .pb file or a folder containing it; if omitted, the environment
    variable GENESIS_TF_INCEPTION is used the same way. Raises FileNotFoundError (saying
    where to get the file) if neither leads to a file, and ValueError if the file is not a
    GraphDef or lacks the `Mul` input or `pool_3` output.
    """
    path = inception_file.resolve(path)
    with open(path, "rb") as handle:
        data = handle.read()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except DecodeError as error:
        raise ValueError(
            f"{path} is not a TensorFlow GraphDef ({error}); expected {INCEPTION_FILENAME} "
            f"from {INCEPTION_URL}"
        ) from error
    names = {node.name for node in graph_def.node}
    missing = [
        tensor for tensor in (INPUT_TENSOR, FEATURE_TENSOR) if tensor.split(":")[0] not in names
    ]
    if missing:
        raise ValueError(
            f"{path} lacks the tensor(s) {', '.join(missing)} that FID reads "
            f"({len(names)} nodes found); expected {INCEPTION_FILENAME} from {INCEPTION_URL}"
        )
    return InceptionNetwork(graph_def, source=path)


# ---------------------------------------------------------------------------------------
# Streaming FID over image iterators
# ---------------------------------------------------------------------------------------


class FIDResult(NamedTuple):
    fid: float
    count_a: int
    count_b: int


def statistics_of(
    batches: Iterable,
    network: Network,
    batch_size: int = 50,
    progress: Progress | None = None,
    rounding: str = "nearest",
    stats: FeatureStatistics | None = None,
) -> FeatureStatistics:
    """Feature statistics of image batches ([n, H, W, C] in [0, 1], NumPy or TF).

    Each batch is split into chunks of at most `batch_size` images (to bound the memory
    of the 299x299 copies), preprocessed, fed to `network` and accumulated into `stats`
    (a new FeatureStatistics if None). `progress`, if given, is called after each chunk
    with the number of images done so far. Keep the result to compare one set (e.g. the
    test set) with several others without recomputing it.
    """
    if batch_size < 1:
        raise ValueError(f"statistics_of: batch_size must be >= 1, got {batch_size}")
    stats = FeatureStatistics() if stats is None else stats
    done = 0
    for batch in batches:
        batch = tf.convert_to_tensor(batch)
        if batch.shape.rank != 4:
            raise ValueError(
                f"statistics_of expects batches of [n, H, W, C] images, got shape {batch.shape}"
            )
        for start in range(0, int(batch.shape[0]), batch_size):
            chunk = batch[start : start + batch_size]
            features = np.asarray(network(preprocess(chunk, rounding=rounding)))
            count = int(chunk.shape[0])
            if features.ndim != 2 or features.shape[0] != count:
                raise ValueError(
                    f"the feature network returned shape {features.shape} for {count} "
                    "images; it must return [n, D]"
                )
            stats.update(features)
            done += count
            if progress is not None:
                progress(done)
    return stats


def fid_from_iterators(
    images_a: Iterable,
    images_b: Iterable,
    network: Network,
    batch_size: int = 50,
    progress: Progress | None = None,
    rounding: str = "nearest",
) -> FIDResult:
    """FID between two streams of image batches in [0, 1] (see `statistics_of`).

    Returns FIDResult(fid, count_a, count_b). `progress` receives the number of images done
    over both sets together (set a first).
    """
    stats_a = statistics_of(images_a, network, batch_size, progress, rounding)
    offset = stats_a.count
    progress_b = None if progress is None else (lambda done: progress(offset + done))
    stats_b = statistics_of(images_b, network, batch_size, progress_b, rounding)
    return FIDResult(stats_a.frechet_distance(stats_b), stats_a.count, stats_b.count)

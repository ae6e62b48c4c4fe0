"""FID: closed-form Fréchet distances, streaming statistics, preprocessing, the pipeline
with a cheap stand-in network, and loading a stand-in frozen graph in the real file format.

The real Inception graph (95 MB, no network here) is not used; the stand-in reproduces
what matters about it: input `Mul`, output `pool_3` [N, 1, 1, D], batch-1 `_output_shapes`
attributes, a batch-1 Reshape after pool_3 and the deprecated BatchNormWithGlobalNormalization
op under an old GraphDef producer version.
"""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.metrics import fid
from tests.helpers.fid import DIM, standin_features, standin_graph_def

# ---------------------------------------------------------------------------------------
# frechet_distance
# ---------------------------------------------------------------------------------------


def _random_rotation(rng, dim):
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def test_frechet_distance_diagonal_covariances_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = fid.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_commuting_full_covariances_closed_form():
    rng = np.random.default_rng(1)
    q = _random_rotation(rng, 5)
    a, b = rng.uniform(0.2, 4.0, size=5), rng.uniform(0.2, 4.0, size=5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    got = fid.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_non_commuting_matches_symmetric_form():
    # Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), the latter from a symmetric eigh.
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 7)), rng.normal(size=(7, 7))
    s1, s2 = x @ x.T + 0.1 * np.eye(7), y @ y.T + 0.1 * np.eye(7)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner))
    got = fid.frechet_distance(np.zeros(7), s1, np.zeros(7), s2)
    assert got == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_zero_for_identical_statistics():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 8))
    sigma, mu = x @ x.T + np.eye(8), rng.normal(size=8)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_frechet_distance_of_scalars_is_squared_difference_of_moments():
    # 1-D: (m1 - m2)^2 + (sd1 - sd2)^2.
    assert fid.frechet_distance(1.0, 4.0, 3.0, 9.0) == pytest.approx(4.0 + 1.0, rel=1e-12)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same length"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"sigma2 must be a \(3, 3\)"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_frechet_distance_rejects_large_imaginary_part():
    # A "covariance" with a negative eigenvalue has no real square root.
    with pytest.raises(ValueError, match="imaginary"):
        fid.frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2), np.eye(2))


def test_frechet_distance_retries_with_eps_when_sqrtm_is_not_finite(monkeypatch):
    real_sqrtm = fid.linalg.sqrtm
    calls = []

    def flaky_sqrtm(matrix):
        calls.append(matrix)
        if len(calls) == 1:  # as scipy does for a (numerically) singular product
            return np.full_like(matrix, np.inf)
        return real_sqrtm(matrix)

    monkeypatch.setattr(fid.linalg, "sqrtm", flaky_sqrtm)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 0.5])
    eps = 1e-6
    got = fid.frechet_distance(np.zeros(2), s1, np.ones(2), s2, eps=eps)
    a, b = np.diag(s1) + eps, np.diag(s2) + eps
    assert len(calls) == 2
    assert got == pytest.approx(2.0 + np.sum(a + b - 2 * np.sqrt(a * b)), rel=1e-9)


def test_frechet_distance_drops_negligible_imaginary_part(monkeypatch):
    real_sqrtm = fid.linalg.sqrtm
    monkeypatch.setattr(fid.linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-9j)
    got = fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), 4 * np.eye(2))
    assert isinstance(got, float)
    assert got == pytest.approx(2.0, rel=1e-9)  # 2 * (1 + 4 - 2 * 2) / 1


# ---------------------------------------------------------------------------------------
# FeatureStatistics
# ---------------------------------------------------------------------------------------


def test_feature_statistics_streaming_matches_numpy():
    rng = np.random.default_rng(4)
    # A large offset checks the shifted accumulation against cancellation as well.
    features = (1e3 + rng.normal(size=(25, 6)) @ rng.normal(size=(6, 6))).astype(np.float32)
    stats = fid.FeatureStatistics()
    start = 0
    for size in (1, 5, 0, 17, 2):  # uneven, including an empty batch; float32 input
        stats.update(features[start : start + size])
        start += size
    features = features.astype(np.float64)
    assert stats.count == 25 and stats.dim == 6
    np.testing.assert_allclose(stats.mean(), features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        stats.covariance(), np.cov(features, rowvar=False), rtol=1e-9, atol=1e-12
    )


def test_feature_statistics_needs_two_samples_for_covariance():
    stats = fid.FeatureStatistics()
    with pytest.raises(ValueError, match="at least 1"):
        stats.mean()
    stats.update(np.ones((1, 3)))
    np.testing.assert_array_equal(stats.mean(), np.ones(3))
    with pytest.raises(ValueError, match="at least 2 sample"):
        stats.covariance()


def test_feature_statistics_rejects_bad_shapes():
    stats = fid.FeatureStatistics().update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="same network"):
        stats.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\[n, D\]"):
        stats.update(np.zeros(3))


# ---------------------------------------------------------------------------------------
# preprocess
# ---------------------------------------------------------------------------------------


def test_preprocess_constant_images_map_to_the_ends_and_middle():
    images = np.stack([np.ones((5, 7, 3)), np.zeros((5, 7, 3)), np.full((5, 7, 3), 0.5)])
    out = fid.preprocess(images.astype(np.float32))
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float32
    assert out.shape == (3, 299, 299, 3)
    out = out.numpy()
    np.testing.assert_array_equal(out[0], 1.0)
    np.testing.assert_array_equal(out[1], -1.0)
    np.testing.assert_allclose(out[2], 128 / 127.5 - 1, rtol=0, atol=1e-7)


def test_preprocess_round_trips_through_8_bits():
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(2, 9, 11, 3)).astype(np.float32)
    levels = np.floor(images.astype(np.float64) * 255 + 0.5)
    jitter = rng.uniform(-0.4, 0.4, size=images.shape) / 255  # stays in the same level
    np.testing.assert_array_equal(
        fid.preprocess(images).numpy(),
        fid.preprocess((levels / 255 + jitter).astype(np.float32)).numpy(),
    )
    # Out-of-range values are clipped; "truncate" floors like np.uint8(255 * x).
    clipped = fid.preprocess(np.full((1, 4, 4, 3), 1.7, np.float32)).numpy()
    np.testing.assert_array_equal(clipped, 1.0)
    truncated = fid.preprocess(np.full((1, 4, 4, 3), 0.999, np.float32), rounding="truncate")
    np.testing.assert_allclose(truncated.numpy(), 254 / 127.5 - 1, rtol=0, atol=1e-7)


def test_preprocess_resizes_bilinearly_and_repeats_grey():
    step = np.zeros((1, 4, 4, 1), np.float32)
    step[:, :, 2:] = 1.0
    out = fid.preprocess(step).numpy()
    assert out.shape == (1, 299, 299, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    row = out[0, 150, :, 0]
    assert np.all(np.diff(row) >= 0)  # monotone ramp across the step...
    assert len(np.unique(row)) > 10  # ...with intermediate values, unlike nearest neighbour
    assert row.min() == -1.0 and row.max() == 1.0


def test_preprocess_rejects_integer_and_non_finite_images():
    with pytest.raises(TypeError, match="x / 255"):
        fid.preprocess(np.zeros((1, 4, 4, 3), np.uint8))
    bad = np.zeros((1, 4, 4, 3), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fid.preprocess(bad)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        fid.preprocess(np.zeros((1, 4, 4, 4), np.float32))


# ---------------------------------------------------------------------------------------
# Pipeline with a stand-in network
# ---------------------------------------------------------------------------------------


def _tiny_network(dim=12):
    """Fixed random conv net with the Inception interface, downsampling first to be cheap.

    It computes in float64 so that an image's features do not depend on which batch it
    was in (float32 kernels differ by ~1e-7 between batch sizes), which the order and
    streaming tests compare at 1e-8.
    """
    kernel = tf.constant(np.random.default_rng(6).normal(size=(3, 3, 3, dim)), tf.float64)

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def features(images):
        images = tf.cast(images, tf.float64)
        small = tf.nn.avg_pool2d(images, ksize=23, strides=23, padding="VALID")  # 13x13
        mapped = tf.tanh(tf.nn.conv2d(small, kernel, strides=1, padding="VALID"))
        return tf.reduce_mean(mapped, axis=[1, 2])

    return lambda images: features(images).numpy().astype(np.float64)


def _images(rng, count, brightness=1.0):
    colours = rng.uniform(size=(count, 1, 1, 3))
    texture = rng.uniform(size=(count, 16, 16, 3))
    return ((0.7 * colours + 0.3 * texture) * brightness).astype(np.float32)


def _batches(images, sizes):
    starts = np.cumsum([0, *sizes])
    assert starts[-1] == len(images)
    return [images[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]


@pytest.fixture(scope="module")
def tiny_network():
    return _tiny_network()


def test_fid_is_zero_for_identical_sets_and_matches_batch_computation(tiny_network):
    rng = np.random.default_rng(7)
    images = _images(rng, 40)
    result = fid.fid_from_iterators([images], _batches(images, [9, 31]), tiny_network)
    assert (result.count_a, result.count_b) == (40, 40)
    assert abs(result.fid) < 1e-6

    other = _images(rng, 30)
    streamed = fid.fid_from_iterators(
        _batches(images, [7, 33]), [other], tiny_network, batch_size=8
    )
    feats_a = tiny_network(fid.preprocess(images))
    feats_b = tiny_network(fid.preprocess(other))
    direct = fid.frechet_distance(
        feats_a.mean(0), np.cov(feats_a, rowvar=False),
        feats_b.mean(0), np.cov(feats_b, rowvar=False),
    )
    assert streamed.fid == pytest.approx(direct, rel=1e-8)


def test_fid_is_invariant_to_image_order(tiny_network):
    rng = np.random.default_rng(8)
    a, b = _images(rng, 40), _images(rng, 40, brightness=0.8)
    reference = fid.fid_from_iterators([a], [b], tiny_network).fid
    shuffled = b[rng.permutation(len(b))]
    again = fid.fid_from_iterators([a], _batches(shuffled, [13, 20, 7]), tiny_network).fid
    assert reference > 0
    assert again == pytest.approx(reference, rel=1e-8)


def test_fid_is_clearly_positive_for_different_sets(tiny_network):
    rng = np.random.default_rng(9)
    a, b = _images(rng, 40), _images(rng, 40, brightness=0.3)
    same = fid.fid_from_iterators([a], [_images(rng, 40)], tiny_network).fid
    different = fid.fid_from_iterators([a], [b], tiny_network).fid
    # Same distribution: only sampling noise; darker images: far larger.
    assert different > 1e-3
    assert different > 10 * same


def test_statistics_of_reports_progress_and_accepts_tf_batches(tiny_network):
    rng = np.random.default_rng(10)
    images = _images(rng, 23)
    seen = []
    stats = fid.statistics_of(
        [tf.constant(images[:15]), images[15:]], tiny_network, batch_size=6, progress=seen.append
    )
    assert stats.count == 23
    assert seen == [6, 12, 15, 21, 23]
    totals = []
    fid.fid_from_iterators([images[:5]], [images[5:9]], tiny_network, progress=totals.append)
    assert totals == [5, 9]


# ---------------------------------------------------------------------------------------
# load_inception with a stand-in frozen graph
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def standin_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inception")
    path = folder / fid.INCEPTION_FILENAME
    path.write_bytes(standin_graph_def().SerializeToString())
    return path


def test_load_inception_without_path_says_where_to_get_the_file(monkeypatch):
    monkeypatch.delenv(fid.INCEPTION_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as info:
        fid.load_inception()
    message = str(info.value)
    assert "\n" not in message
    for needed in (fid.INCEPTION_URL, "classify_image_graph_def.pb", "--inception_path=PATH",
                   "GENESIS_TF_INCEPTION=PATH"):
        assert needed in message


def test_load_inception_with_missing_file_or_folder(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="GENESIS_TF_INCEPTION") as info:
        fid.load_inception(tmp_path / "nope.pb")
    assert str(tmp_path / "nope.pb") in str(info.value)
    monkeypatch.setenv(fid.INCEPTION_ENV_VAR, str(tmp_path))  # folder without the .pb
    with pytest.raises(FileNotFoundError, match="classify_image_graph_def.pb"):
        fid.load_inception()


def test_load_inception_runs_standin_graph_at_any_batch_size(standin_file, monkeypatch):
    images = np.random.default_rng(12).uniform(-1, 1, size=(3, 299, 299, 3)).astype(np.float32)
    expected = standin_features(images)

    network = fid.load_inception(standin_file)
    assert network.dim == DIM
    got = network(images)
    assert got.dtype == np.float64 and got.shape == (3, DIM)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(network(tf.constant(images[:1])), expected[:1], rtol=1e-5,
                               atol=1e-5)

    monkeypatch.setenv(fid.INCEPTION_ENV_VAR, str(standin_file.parent))  # folder form
    with fid.load_inception() as from_env:
        np.testing.assert_allclose(from_env(images), expected, rtol=1e-5, atol=1e-5)

    with pytest.raises(ValueError, match="preprocess"):
        network(images[:, :64, :64])


def test_batch_one_shapes_are_stripped_before_import():
    stripped = fid._without_fixed_shapes(standin_graph_def())
    assert not any("_output_shapes" in node.attr for node in stripped.node)


def test_old_batch_norm_graph_cannot_run_in_a_tf_function():
    # Why InceptionNetwork uses a v1 Session: the function runtime rejects the 2015 op.
    graph_def = fid._without_fixed_shapes(standin_graph_def())

    def imported(images):
        return tf.compat.v1.import_graph_def(
            graph_def, input_map={"Mul:0": images}, return_elements=["pool_3:0"]
        )[0]

    wrapped = tf.compat.v1.wrap_function(
        imported, [tf.TensorSpec([None, 299, 299, 3], tf.float32)]
    )
    with pytest.raises(tf.errors.UnimplementedError, match="BatchNormWithGlobalNormalization"):
        wrapped(tf.zeros([1, 299, 299, 3]))


def test_load_inception_rejects_garbage_and_graphs_without_pool_3(tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="garbage.pb"):
        fid.load_inception(garbage)
    no_pool = tmp_path / "no_pool.pb"
    no_pool.write_bytes(standin_graph_def(with_pool_3=False).SerializeToString())
    with pytest.raises(ValueError, match=r"no_pool\.pb lacks the tensor\(s\) pool_3:0"):
        fid.load_inception(no_pool)

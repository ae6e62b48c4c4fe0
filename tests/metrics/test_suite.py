"""The evaluators (genesis_tf.metrics.suite): one interface, one forward pass, the same
numbers as the per-metric functions, and one-line errors for what cannot be scored."""
import pytest
import tensorflow as tf

from genesis_tf.metrics import fid, forward, probes, suite
from genesis_tf.metrics.segmentation import segmentation_metrics
from genesis_tf.models import SceneOutput


class _Tiny:
    """A tiny scene model: masks from the image's brightness plus seeded noise (so the
    segmentation depends on the seed per batch), reconstructions that do too, samples
    from the seed, and the mean colour as features."""

    image_size = 16
    num_slots = 3

    def __call__(self, images, training=False, num_slots=None, seed=None):
        k = num_slots or self.num_slots
        count = tf.shape(images)[0]
        noise = tf.random.stateless_uniform(tf.stack([count, k, 16, 16, 1]),
                                            seed=tf.stack([seed, 0]))
        levels = tf.reshape(tf.range(k, dtype=tf.float32) / k, [1, k, 1, 1, 1])
        brightness = tf.reduce_mean(images, axis=-1, keepdims=True)[:, None]
        log_masks = tf.nn.log_softmax(-8.0 * tf.abs(brightness - levels) + noise, axis=1)
        recon = tf.clip_by_value(images + 0.1 * noise[:, 0], 0.0, 1.0)
        return SceneOutput(recon=recon, log_masks=log_masks,
                           components=tf.repeat(images[:, None], k, axis=1))

    def sample(self, batch_size, seed=None, num_slots=None):
        recon = tf.random.stateless_uniform([batch_size, 16, 16, 3], seed=tf.stack([seed, 1]))
        return SceneOutput(recon=recon, log_masks=None, components=None)

    def features(self, images, num_slots=None):
        return tf.reduce_mean(images, axis=[1, 2])


def _mean_colour_network(images):
    """A stand-in for Inception's pool_3: mean and spread of each channel."""
    return tf.concat([tf.reduce_mean(images, axis=[1, 2]),
                      tf.math.reduce_std(images, axis=[1, 2])], axis=1)


@pytest.fixture
def forward_calls(monkeypatch):
    """Every call of the shared forward pass, as (dataset, split, the call's name)."""
    calls, original = [], forward.forward_batches

    def counting(model, dataset, image_size, **kwargs):
        calls.append((dataset, kwargs.get("split"), kwargs.get("call", forward.scene).__name__))
        return original(model, dataset, image_size, **kwargs)

    monkeypatch.setattr(forward, "forward_batches", counting)
    return calls


def test_segmentation_and_fid_stream_through_the_shared_forward(forward_calls):
    options = suite.Options(num_images=20, batch_size=8, seed=3, fid_images=12,
                            network=_mean_colour_network)
    results = suite.evaluate(_Tiny(), "synthetic", ["sc", "fid", "ari"], options)
    assert list(results) == ["fg_ari", "ari", "sc", "msc", "fid_generated",
                             "fid_reconstructed"]
    # One pass for ari and sc together, one for FID's reconstructions.
    assert forward_calls == [("synthetic", "test", "scene")] * 2
    assert results["fid_reconstructed"]["count"] == 12
    assert results["fid_generated"]["reference_count"] == 12


def test_the_suite_gives_the_numbers_of_the_per_metric_functions():
    options = suite.Options(num_images=24, batch_size=10, seed=7, num_slots=2)
    results = suite.evaluate(_Tiny(), "synthetic", ["ari", "sc"], options)
    direct, _ = segmentation_metrics(_Tiny(), "synthetic", 16, 24, batch_size=10, seed=7,
                                     num_slots=2)
    for name in ("fg_ari", "ari", "sc", "msc"):
        assert results[name] == direct[name]
    # ...and the seed matters, so equal numbers mean equal seeds per batch.
    other, _ = segmentation_metrics(_Tiny(), "synthetic", 16, 24, batch_size=10, seed=8,
                                    num_slots=2)
    assert other["ari"]["mean"] != direct["ari"]["mean"]

    fid_options = suite.Options(batch_size=5, seed=2, fid_images=10,
                                network=_mean_colour_network)
    score = suite.evaluate(_Tiny(), "synthetic", ["fid"], fid_options)["fid_reconstructed"]
    model = _Tiny()
    reconstructions = [model(b["image"], seed=tf.constant(2 + i)).recon
                       for i, b in enumerate(_batches(10, 5))]
    test = fid.statistics_of((b["image"] for b in _batches(10, 5)), _mean_colour_network,
                             rounding="truncate")
    expected = fid.statistics_of(reconstructions, _mean_colour_network, rounding="truncate")
    assert score["value"] == pytest.approx(expected.frechet_distance(test), rel=1e-6)


def _batches(count, batch_size):
    from genesis_tf import data as data_lib

    return data_lib.eval_dataset("synthetic", 16, batch_size, max_examples=count)


def test_probes_stream_through_the_shared_forward_and_score_as_run_probes(
        forward_calls, shapestacks_dir):
    options = suite.Options(num_images=2, batch_size=4, probe_train_images=4,
                            probe_epochs=2, data_dir=shapestacks_dir)
    results = suite.evaluate(_Tiny(), "shapestacks", ["probes"], options)
    assert sorted(results) == ["probe_height", "probe_stability", "probe_view"]
    assert forward_calls == [("shapestacks", "train", "features"),
                             ("shapestacks", "test", "features")]
    train = probes.collect_features(_Tiny(), "shapestacks", 16, "train",
                                    data_dir=shapestacks_dir, max_examples=4)
    test = probes.collect_features(_Tiny(), "shapestacks", 16, "test",
                                   data_dir=shapestacks_dir, max_examples=2)
    for task, values in probes.run_probes(train, test, epochs=2).items():
        assert results[f"probe_{task}"] == dict(values, count=2)


def test_evaluators_one_per_family_in_the_registry_order():
    built = suite.evaluators(["sc", "probes", "ari"])
    assert [type(e) for e in built] == [suite.SegmentationEvaluator, suite.ProbeEvaluator]
    assert built[0].names == ["fg_ari", "ari", "sc", "msc"]
    assert suite.evaluators(["sc"])[0].names == ["sc", "msc"]
    assert suite.METRICS == ("ari", "sc", "fid", "probes")


@pytest.mark.parametrize("metrics, dataset, options, message", [
    (["ari", "iou"], "synthetic", {}, "metrics: unknown iou; choose from ari, sc, fid, probes"),
    ([], "synthetic", {}, "unknown (none given)"),
    (["probes"], "synthetic", {}, "probes need ShapeStacks labels; synthetic has none"),
    (["fid"], "synthetic", {"inception_path": "/nowhere"}, "no file at /nowhere"),
    (["ari"], "shapestacks", {"split": "nope"}, "shapestacks has no split 'nope'"),
])
def test_what_cannot_be_scored_is_an_evaluation_error(metrics, dataset, options, message,
                                                      shapestacks_dir):
    """A user error (EvaluationError, or the data's own, e.g. UnknownSplitError), exit 2."""
    from genesis_tf.errors import UserError

    options = suite.Options(num_images=2, data_dir=shapestacks_dir, **options)
    with pytest.raises(UserError) as info:
        suite.evaluate(_Tiny(), dataset, metrics, options)
    assert message in str(info.value)
    assert info.value.exit_code == 2 and isinstance(info.value, ValueError)


def test_table_rows_for_each_kind_of_value():
    results = {"fg_ari": {"mean": 0.51234, "stderr": 0.01, "count": 40, "skipped": 2},
               "probe_view": {"accuracy": 0.375, "count": 2},
               "fid_generated": {"value": 123.456, "count": 24}}
    lines = suite.table(results, 7).splitlines()
    assert lines[0].endswith("(checkpoint step 7)")
    assert lines[1].split() == ["fg_ari", "(2", "skipped)", "0.5123", "±", "0.0100", "40"]
    assert lines[2].split() == ["probe_view", "37.5", "%", "2"]
    assert lines[3].split() == ["fid_generated", "123.46", "24"]


def test_table_says_apc_ari_is_over_all_pixels():
    results = {"fg_ari": {"mean": 1.0, "stderr": 0.0, "count": 4},
               "ari": {"mean": 0.55, "stderr": 0.01, "count": 4}}
    lines = suite.table(results, 3, "apc").splitlines()
    assert lines[0].startswith("APC: ari is over all pixels, background included")
    assert "fg_ari has no background label" in lines[0]
    assert lines[1].endswith("(checkpoint step 3)") and len(lines) == 4
    assert suite.table(results, 3, "shapestacks") == suite.table(results, 3)
    assert "APC" not in suite.table({"fid": {"value": 9.0}}, 3, "apc")  # no ARI rows

"""GENESIS-V2's two mask sets in evaluation: the IC-SBP masks under today's keys, the
decoded masks under the same keys + '_decoded', each saying which in the table and the
results file; every other model's keys and table as before."""
import json

import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import data, runs
from genesis_tf.metrics import segmentation, suite
from genesis_tf.models import MODELS, SceneOutput, config_of
from tests.helpers.training import selected_tests, start_binary

SIZE, IMAGES, BATCH, SEED = 32, 6, 3, 5
NAMES = ["fg_ari", "ari", "sc", "msc"]
OPTIONS = suite.Options(num_images=IMAGES, batch_size=BATCH, seed=SEED)
BINARY_TEST = "test_genesis_evaluate_reports_both_mask_sets_of_a_genesis_v2_run"


@pytest.fixture(scope="module")
def model():
    return MODELS["GenesisV2"](image_size=SIZE, num_slots=3, latent_size=16).build_for_images()


@pytest.fixture(scope="module")
def evaluation(model, tmp_path_factory, request):
    """(run directory, genesis-evaluate on it) for the binary's test, started when the
    module starts so that it runs beside the in-process tests. The run directory is as
    training writes it (model.json, run.json, a checkpoint) with `model`'s untrained
    weights: nothing to train for what evaluation reports."""
    if BINARY_TEST not in [item.name for item in selected_tests(request)]:
        yield None
        return
    run = tmp_path_factory.mktemp("genesis_v2_run")
    description = config_of(model)
    runs.write_description(str(run), description)
    runs.write_run_info(str(run), "synthetic", None, SIZE, model=description)
    tf.train.Checkpoint(model=model).save(str(run / "ckpt"))
    process = start_binary("genesis_tf.evaluate", [
        f"--model_dir={run}", "--metrics=ari,sc", f"--num_images={IMAGES}",
        f"--batch_size={BATCH}", f"--seed={SEED}"])
    yield run, process
    process.kill()  # a session that ended early


@pytest.fixture(scope="module")
def results(model, evaluation):
    """The segmentation evaluator's results and its first images (for figures); after the
    binary has started (`evaluation`), so that both run at once."""
    del evaluation
    evaluator = suite.SegmentationEvaluator(OPTIONS, keep_first=2)
    return evaluator.run(model, "synthetic"), evaluator.first


def _direct_scores(model):
    """{key: (mean over images, per-image values)} from segmentation's per-image functions
    on the model's own two mask sets, batch i sampled with seed SEED + i (as evaluated)."""
    per_image, outputs = {}, []
    batches = data.eval_dataset("synthetic", SIZE, BATCH, max_examples=IMAGES)
    for index, batch in enumerate(batches):
        out = model(batch["image"], training=False, seed=SEED + index)
        outputs.append(out)
        true_ids = batch["instance_ids"].numpy()
        for suffix, log_masks in (("", out.ic_sbp_log_masks), ("_decoded", out.log_masks)):
            predicted = np.argmax(log_masks.numpy()[..., 0], axis=1)
            covering = segmentation.segmentation_covering(true_ids, predicted)
            scores = {"fg_ari": segmentation.foreground_ari(true_ids, predicted)[1],
                      "ari": [segmentation.adjusted_rand_index(t, p)
                              for t, p in zip(true_ids, predicted, strict=True)],
                      "sc": covering["sc_per_image"], "msc": covering["msc_per_image"]}
            for name, values in scores.items():
                per_image.setdefault(name + suffix, []).extend(values)
    scores = {key: (np.nanmean(values), np.asarray(values)) for key, values in per_image.items()}
    return scores, outputs[0]


def test_both_mask_sets_are_scored_as_the_segmentation_functions_score_them(model, results):
    metrics, first = results
    direct, first_out = _direct_scores(model)
    assert list(metrics) == NAMES + [f"{name}_decoded" for name in NAMES]
    for key, (mean, _) in direct.items():
        assert metrics[key]["mean"] == pytest.approx(mean, abs=1e-9), key
        assert metrics[key]["count"] + metrics[key]["skipped"] == IMAGES
    for name in NAMES:
        assert metrics[name]["masks"] == segmentation.IC_SBP_MASKS
        assert metrics[f"{name}_decoded"]["masks"] == segmentation.DECODED_MASKS
    # The two sets are different masks, so a mix-up of the keys would show.
    assert max(abs(metrics[n]["mean"] - metrics[f"{n}_decoded"]["mean"]) for n in NAMES) > 0.01
    # The evaluation forward carries the IC-SBP masks along to the figures.
    np.testing.assert_allclose(first["out"].ic_sbp_log_masks,
                               first_out.ic_sbp_log_masks[:2], atol=1e-5)
    np.testing.assert_allclose(first["aris"]["IC-SBP"], direct["fg_ari"][1][:2])
    np.testing.assert_allclose(first["aris"]["decoded"], direct["fg_ari_decoded"][1][:2])


def test_the_table_says_which_masks_each_row_scored(results):
    lines = suite.table(results[0], 3).splitlines()
    assert len(lines) == 1 + 2 * len(NAMES)
    for line in lines[1:]:
        key = line.split()[0]
        masks = segmentation.DECODED_MASKS if key.endswith("_decoded") else \
            segmentation.IC_SBP_MASKS
        assert line.endswith(f"masks: {masks}"), line


class _OneMaskSet:
    """A scene model with one mask set (every model but GENESIS-V2): masks from the
    image's brightness; optionally a second set standing in for GENESIS-V2's IC-SBP masks,
    all of every image in slot 1."""

    image_size = 16
    num_slots = 3

    def __init__(self, second_set=False):
        self.second_set = second_set

    def __call__(self, images, training=False, num_slots=None, seed=None):
        levels = tf.reshape(tf.range(3, dtype=tf.float32) / 3, [1, 3, 1, 1, 1])
        brightness = tf.reduce_mean(images, axis=-1, keepdims=True)[:, None]
        log_masks = tf.nn.log_softmax(-8.0 * tf.abs(brightness - levels), axis=1)
        return SceneOutput(recon=images, log_masks=log_masks,
                           components=tf.repeat(images[:, None], 3, axis=1),
                           ic_sbp_log_masks=self._one_slot(log_masks) if self.second_set
                           else None)

    @staticmethod
    def _one_slot(log_masks):
        return tf.nn.log_softmax(tf.zeros_like(log_masks) + [[[[[9.0]]], [[[0.0]]], [[[0.0]]]]],
                                 axis=1)


def test_other_models_keep_their_keys_and_table():
    options = suite.Options(num_images=8, batch_size=4)
    results = suite.evaluate(_OneMaskSet(), "synthetic", ["ari", "sc"], options)
    assert list(results) == NAMES
    assert all("masks" not in value for value in results.values())
    assert "masks" not in suite.table(results, 1)
    # Asked for one metric family, a model with two mask sets gets it for both, in order;
    # the IC-SBP set (here one segment per image) has the plain keys.
    covering = suite.evaluate(_OneMaskSet(second_set=True), "synthetic", ["sc"], options)
    assert list(covering) == ["sc", "msc", "sc_decoded", "msc_decoded"]
    assert covering["sc_decoded"]["mean"] == pytest.approx(results["sc"]["mean"])
    assert covering["sc"]["mean"] < results["sc"]["mean"] - 0.1


def test_genesis_evaluate_reports_both_mask_sets_of_a_genesis_v2_run(evaluation, results):
    run, process = evaluation
    result = process.result()
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if "masks: " in line]
    assert [line.split()[0] for line in table] == list(results[0])
    assert all(line.endswith(segmentation.DECODED_MASKS) for line in table[len(NAMES):])
    with open(run / "eval_test_0.json") as f:
        written = json.load(f)["metrics"]
    for key, value in results[0].items():  # the same weights score the same in-process
        assert written[key]["masks"] == value["masks"]
        assert written[key]["mean"] == pytest.approx(value["mean"], abs=1e-6), key

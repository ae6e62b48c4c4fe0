"""The benchmark scripts run (tiny settings) and report what they promise; nothing is timed."""
import concurrent.futures
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The scripts' quick runs (test -> arguments, timeout), longest first. Each is mostly one
# busy thread, so they run two at a time, alongside the module's in-process tests.
_SCRIPT_RUNS = {
    "test_levers_benchmark_quick": (
        ["benchmarks/levers.py", "--quick",
         "--variants=baseline,explicit_padding,conv_full_window,tconv_stride1,decode_k_minus_1"],
        900),
    "test_train_step_benchmark_quick": (
        ["benchmarks/train_step.py", "--quick", "--modes=function"], 600),
    "test_profile_step_quick": (["benchmarks/profile_step.py", "--quick"], 600),
    "test_inference_benchmarks_quick[decompose.py]": (
        ["benchmarks/decompose.py", "--quick"], 600),
    "test_inference_benchmarks_quick[sample.py]": (["benchmarks/sample.py", "--quick"], 600),
    "test_conv_padding_benchmark_quick": (["benchmarks/conv_padding.py", "--quick"], 600),
    "test_overfit_batch_runs_and_reports_the_batchs_levels": (
        ["benchmarks/overfit_batch.py", "--dataset=synthetic", "--batch_size=4", "--steps=2",
         "--every=1"], 600),
}


@pytest.fixture(scope="module", autouse=True)
def script_runs(request, tmp_path_factory):
    """Starts the selected tests' script runs: test name -> future of (result, json path)."""
    def run(args, timeout, out):
        result = subprocess.run([sys.executable, *args, f"--json={out}"], capture_output=True,
                                text=True, timeout=timeout, cwd=ROOT)
        return result, out

    selected = {item.name for item in request.session.items if item.module is request.module}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, args, timeout, tmp_path_factory.mktemp("r") / "r.json")
                   for name, (args, timeout) in _SCRIPT_RUNS.items() if name in selected}
        yield futures
        for future in futures.values():  # e.g. after -x stopped the session early
            future.cancel()


@pytest.mark.slow
def test_train_step_benchmark_quick(script_runs):
    result, out = script_runs["test_train_step_benchmark_quick"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["rows"]] == ["function"]  # eager: the same step
    assert report["config"]["optimizer"] == "torch_adam"  # the loop's default
    assert report["flops_per_step"] > 1e8  # a K=3 32x32 step is several GFLOP
    # Forward alone is about a third of forward + backward (two gradient convs per conv).
    assert 0.25 < report["flops"]["analytical_forward"] / report["flops_per_step"] < 0.45
    assert report["flops"]["profiler"] > 0 and report["floor_s"] > 0
    assert report["rows"][0]["first_call_s"] > 0
    assert report["machine_gflops"]["matmul"] > 0
    assert "median s" in result.stdout and "GFLOP" in result.stdout
    assert "torch_adam" in result.stdout


@pytest.mark.slow
def test_profile_step_quick(script_runs):
    result, out = script_runs["test_profile_step_quick"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    types = {row["type"]: row for row in report["by_type"]}
    # The step's convolutions and their gradients are in the trace, with their counts.
    # (Under oneDNN's names where it took the op: _MklNativeConv2DBackpropFilterWithBias.)
    def of_kind(kind):
        return [row for name, row in types.items() if kind in name]

    assert of_kind("Conv2D") and of_kind("FusedBatchNormV3")
    filter_grads = of_kind("Conv2DBackpropFilter")
    assert sum(r["ms"] for r in filter_grads) > 0 and sum(r["ops"] for r in filter_grads) > 5
    layers = {(row["layer"], row["direction"]) for row in report["by_layer"]}
    assert {("mask_decoder/gated_deconv_4", "backward"),
            ("mask_encoder/head", "forward")} <= layers
    assert report["ops_per_step"] > 100 and report["wall_s_per_step"] > 0
    assert "op type" in result.stdout and "slowest ops" in result.stdout


def test_conv_padding_benchmark_quick(script_runs):
    result, out = script_runs["test_conv_padding_benchmark_quick"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["rows"]) == 3 and isinstance(report["bfloat16_gradients_native"], bool)
    for row in report["rows"]:
        assert all(row[f"{impl}_{dtype}_ms"] > 0 for impl in ("explicit", "conv_ops")
                   for dtype in ("float32", "bfloat16")), row
    assert "EXPLICIT f32" in result.stdout and "transposed" in result.stdout


@pytest.mark.parametrize("optimizer", ["torch_adam", "keras_adam"])
def test_train_step_benchmark_times_the_loops_step(monkeypatch, benchmark_module, optimizer):
    import argparse

    import keras
    import tensorflow as tf

    from genesis_tf.training.optimizers import TorchAdam

    train_step = benchmark_module("train_step")
    make_train_step, built = train_step.make_train_step, []

    def spy(*args, **kwargs):  # the training loop's make_train_step, recorded
        built.append(kwargs)
        return make_train_step(*args, **kwargs)

    monkeypatch.setattr(train_step, "make_train_step", spy)
    args = argparse.Namespace(model="genesis", image_size=32, num_slots=3, batch_size=2,
                              policy="float32", optimizer=optimizer)
    model, opt, replica_step = train_step.build(args)
    assert len(built) == 1 and built[0] == {"loss_scaling": False}
    assert type(opt) is (TorchAdam if optimizer == "torch_adam" else keras.optimizers.Adam)
    assert opt.built and float(opt.learning_rate) == pytest.approx(1e-4)
    if optimizer == "keras_adam":
        return  # the step is the same code for both; tracing it once is enough
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[1, 2])
    before = [v.numpy().copy() for v in model.trainable_variables]
    means = train_step.run_step(train_step.make_step(replica_step, images, "function"))
    assert set(means) == {"err", "kl/m", "kl/l"}  # the loop's step returns term means
    assert int(opt.iterations.numpy()) == 1
    assert any((b != v.numpy()).any() for b, v in zip(before, model.trainable_variables,
                                                         strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("script", ["sample.py", "decompose.py"])
def test_inference_benchmarks_quick(script_runs, script):
    result, out = script_runs[f"test_inference_benchmarks_quick[{script}]"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["what"] == script[:-3] and report["images_per_s"] > 0
    assert "img/s" in result.stdout


@pytest.fixture
def benchmark_module(monkeypatch):
    """Imports a script of benchmarks/ as a module. The scripts import their siblings
    (flops.py, inference.py) by bare name, as they do when run from that folder, so the
    folder is on sys.path during the test (pytest restores it afterwards)."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module


def test_flop_count_of_convs_and_matmuls(benchmark_module):
    import tensorflow as tf

    flops = benchmark_module("flops")
    x = tf.zeros([2, 8, 8, 3])
    kernel = tf.Variable(tf.ones([5, 5, 3, 4]))
    tkernel = tf.Variable(tf.ones([4, 4, 6, 4]))  # transposed: [kh, kw, out, in]
    w = tf.Variable(tf.ones([16, 7]))

    @tf.function
    def fn():
        with tf.GradientTape() as tape:
            y = tf.nn.conv2d(x, kernel, 1, "SAME")  # [2, 8, 8, 4]
            t = tf.nn.conv2d_transpose(y, tkernel, [2, 16, 16, 6], 2, "SAME")
            z = tf.matmul(tf.reshape(t, [-1, 16])[:5], w)  # [5, 16] @ [16, 7]
            loss = tf.reduce_sum(z)
        return loss, tape.gradient(loss, [kernel, tkernel, w])

    counts = flops.count_flops(fn.get_concrete_function())
    conv = 2 * (2 * 8 * 8 * 4) * 5 * 5 * 3  # forward conv
    tconv = 2 * (2 * 8 * 8 * 4) * 4 * 4 * 6  # transposed conv: its input is the small side
    # Conv2D: the conv, and the transposed conv's gradient w.r.t. its input y.
    assert counts["Conv2D"] == conv + tconv
    assert counts["Conv2DBackpropFilter"] == conv + tconv  # both kernels' gradients
    # Only the transposed conv itself: x is a constant, so the gradient w.r.t. x that
    # TensorFlow's conv gradient builds is never run and must not be counted.
    assert counts["Conv2DBackpropInput"] == tconv
    # The forward matmul and its gradients w.r.t. both operands.
    assert counts["MatMul"] == 3 * 2 * 5 * 16 * 7


def test_conv_floor_rebuilds_every_conv_op_of_the_traced_function(benchmark_module):
    import tensorflow as tf

    conv_floor = benchmark_module("conv_floor")
    x = tf.random.normal([2, 8, 8, 3])
    kernel = tf.Variable(tf.ones([5, 5, 3, 4]))
    tkernel = tf.Variable(tf.ones([5, 5, 6, 4]))  # transposed: [kh, kw, out, in]

    @tf.function
    def fn():
        with tf.GradientTape() as tape:
            y = tf.nn.conv2d(x, kernel, 1, [[0, 0], [2, 2], [2, 2], [0, 0]])  # explicit
            t = tf.nn.conv2d_transpose(y, tkernel, [2, 19, 19, 6], 2, "VALID")
            loss = tf.reduce_sum(t)
        return loss, tape.gradient(loss, [kernel, tkernel])

    specs = conv_floor.conv_specs(fn.get_concrete_function())
    # forward conv and the transposed conv's input gradient; both kernels' gradients; the
    # transposed conv itself (x is a constant: its gradient is never run).
    assert sorted(s[0] for s in specs) == ["Conv2D", "Conv2D", "Conv2DBackpropFilter",
                                           "Conv2DBackpropFilter", "Conv2DBackpropInput"]
    alone = conv_floor.convs_alone(specs)
    assert len(alone()) == len(specs)
    rebuilt = conv_floor.conv_specs(alone.get_concrete_function())
    assert sorted(map(repr, rebuilt)) == sorted(map(repr, specs))  # shapes, attrs, FLOPs


@pytest.mark.slow
def test_levers_benchmark_quick(script_runs):
    result, out = script_runs["test_levers_benchmark_quick"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["baseline", "explicit_padding", "conv_full_window", "tconv_stride1",
                          "decode_k_minus_1"]
    # The shipped step decodes all K mask latents in training; K−1 is less work.
    assert rows["decode_k_minus_1"]["gflop"] < rows["baseline"]["gflop"]
    assert rows["explicit_padding"]["gflop"] == pytest.approx(rows["baseline"]["gflop"])
    # The full-window convs as matmuls are the same arithmetic.
    assert rows["conv_full_window"]["gflop"] == pytest.approx(rows["baseline"]["gflop"])
    assert rows["tconv_stride1"]["gflop"] == pytest.approx(rows["baseline"]["gflop"])
    assert all(r["tracings"] == 1 and len(r["times_s"]) == 2 for r in rows.values())
    assert rows["baseline"]["vs_baseline"] == 1.0
    assert "x base" in result.stdout


def test_decoding_k_minus_1_mask_latents_changes_training_only(benchmark_module):
    """The decode_k_minus_1 lever: in inference (moving statistics) the K-th latent's
    logits are never used and skipping its decode changes nothing; in training the mask
    decoder's batch norm normalises over B·K latents as shipped but over B·(K−1) with the
    lever, so the masks differ."""
    import types

    import numpy as np
    import tensorflow as tf

    from genesis_tf.models import Genesis

    levers = benchmark_module("levers")
    model = Genesis(image_size=32, num_slots=3).build_for_images()
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[7, 8])
    lever = types.MethodType(levers._decode_k_minus_1, model)

    def both(training):
        shipped = model(images, training=training, deterministic=True)
        object.__setattr__(model, "_decode_masks", lever)
        try:
            k_minus_1 = model(images, training=training, deterministic=True)
        finally:
            del model._decode_masks  # back to the class's method
        return shipped, k_minus_1

    shipped, k_minus_1 = both(training=False)  # first: training updates moving statistics
    for name in ("log_masks", "recon", "mask_logits"):
        np.testing.assert_allclose(getattr(shipped, name).numpy(),
                                   getattr(k_minus_1, name).numpy(), atol=1e-5, err_msg=name)
    np.testing.assert_allclose(model.loss_terms(images, shipped)["err"].numpy(),
                               model.loss_terms(images, k_minus_1)["err"].numpy(), rtol=1e-5)

    shipped, k_minus_1 = both(training=True)
    assert shipped.mask_logits.shape == k_minus_1.mask_logits.shape  # [B, K−1, H, W, 1]
    for name in ("mask_logits", "log_masks"):
        difference = np.abs(getattr(shipped, name).numpy() - getattr(k_minus_1, name).numpy())
        assert difference.max() > 1e-2, name  # float32 rounding is ~1e-6
    # (err is not compared: an untrained model's components are nearly alike, so its
    # reconstruction hardly depends on the masks.)


def test_explicit_padding_variant_computes_the_same_convolutions(benchmark_module):
    import numpy as np
    import tensorflow as tf

    from genesis_tf.layers import GatedConv2D

    levers = benchmark_module("levers")
    x = tf.random.stateless_normal([2, 9, 9, 3], seed=[1, 2])
    for layer in (GatedConv2D(4, 5, padding=2), GatedConv2D(4, 4, strides=2, padding=1),
                  GatedConv2D(4, 5, strides=2, padding=2, output_padding=1, transpose=True),
                  GatedConv2D(4, 5, padding=2, transpose=True),
                  GatedConv2D(4, 3, padding=0, transpose=True)):
        layer(x)
        explicit = levers._with_explicit_padding(layer._convolve)
        np.testing.assert_allclose(layer._convolve(x).numpy(), explicit(x).numpy(),
                                   atol=1e-5)
        # ... through TensorFlow's EXPLICIT-padding ops wherever the layer pads.
        graph = tf.function(explicit).get_concrete_function(tf.TensorSpec(x.shape)).graph
        paddings = {op.get_attr("padding").decode() for op in graph.get_operations()
                    if op.type.startswith("Conv2D")}
        assert paddings == ({"EXPLICIT"} if layer.padding else {"VALID"}), paddings


def test_serving_benchmark_times_the_exported_signatures(monkeypatch, tmp_path, capsys,
                                                         benchmark_module):
    out = tmp_path / "serving.json"
    serving = benchmark_module("serving")
    monkeypatch.setattr(sys, "argv", [
        "serving.py", "--image_size=32", "--num_slots=3", "--batch_sizes=1,2", "--repeats=1",
        f"--json={out}"])
    serving.main()
    report = json.loads(out.read_text())
    assert [(r["signature"], r["batch_size"]) for r in report["rows"]] == [
        ("decompose", 1), ("decompose", 2), ("generate", 1), ("generate", 2)]
    assert all(r["median_s"] > 0 and r["images_per_s"] > 0 for r in report["rows"])
    assert report["cpu"]
    assert "images/s" in capsys.readouterr().out


def test_recorded_results_are_in_results_where_the_readme_names_them():
    import re

    folder = ROOT / "benchmarks"
    assert not sorted(folder.glob("*.json")), "results go to benchmarks/results/"
    named = set(re.findall(r"results/([\w*]+\.json)", (folder / "README.md").read_text()))
    assert len(named) > 10
    for pattern in named:
        assert sorted((folder / "results").glob(pattern)), f"README names missing {pattern}"


def test_overfit_batch_runs_and_reports_the_batchs_levels(script_runs):
    result, out = script_runs["test_overfit_batch_runs_and_reports_the_batchs_levels"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["step"] for row in report["rows"]] == [0, 1, 2]
    assert all(row["err"] > report["levels"]["perfect"] for row in report["rows"])
    assert report["levels"]["goal"] == pytest.approx(0.5655 * 3 * 32 * 32)
    assert "background only" in result.stdout and "step     2" in result.stdout
    assert "Gradients do not exist" not in result.stderr  # the prior is left out


def test_overfit_levels_by_hand(benchmark_module):
    """One pixel of a 2x2 image off its background colour by 0.5 in one channel costs
    0.5² / (2·0.7²) nats more than the perfect reconstruction; a one-colour image none."""
    overfit = benchmark_module("overfit_batch")
    plain = np.full([2, 2, 3], 0.25)
    spotted = plain.copy()
    spotted[0, 0, 1] = 0.75
    one = overfit.reference_levels(np.stack([plain]), 0.5)
    assert one["background_only"] == pytest.approx(one["perfect"])
    assert one["perfect"] == pytest.approx(12 * 0.5 * np.log(2 * np.pi * 0.49))
    assert one["goal"] == pytest.approx(6.0)
    two = overfit.reference_levels(np.stack([plain, spotted]), 0.5)
    assert two["background_only"] - two["perfect"] == pytest.approx(0.25 / 0.98 / 2)

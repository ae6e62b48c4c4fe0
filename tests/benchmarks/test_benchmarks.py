"""The benchmark scripts run (tiny settings) and report what they promise; nothing is timed."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_step_benchmark_quick(tmp_path):
    out = tmp_path / "r.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/train_step.py", "--quick", "--modes=eager,function",
         f"--json={out}"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["rows"]] == ["eager", "function"]
    assert report["flops_per_step"] > 1e8  # a K=3 32x32 step is several GFLOP
    # Forward alone is about a third of forward + backward (two gradient convs per conv).
    assert 0.25 < report["flops"]["analytical_forward"] / report["flops_per_step"] < 0.45
    assert report["flops"]["profiler"] > 0 and report["floor_s"] > 0
    assert report["rows"][1]["first_call_s"] > 0
    assert report["machine_gflops"]["matmul"] > 0
    assert "median s" in result.stdout and "GFLOP" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", ["sample.py", "decompose.py"])
def test_inference_benchmarks_quick(tmp_path, script):
    out = tmp_path / "r.json"
    result = subprocess.run([sys.executable, f"benchmarks/{script}", "--quick", f"--json={out}"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["what"] == script[:-3] and report["images_per_s"] > 0
    assert "img/s" in result.stdout


def _flops_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import flops
    finally:
        sys.path.pop(0)
    return flops


def test_flop_count_of_convs_and_matmuls():
    import tensorflow as tf

    flops = _flops_module()
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


@pytest.mark.slow
def test_levers_benchmark_quick(tmp_path):
    out = tmp_path / "r.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/levers.py", "--quick",
         "--variants=baseline,pad_crop,decode_all_k", f"--json={out}"],
        capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["baseline", "pad_crop", "decode_all_k"]
    # Decoding all K mask latents does K/(K-1) of the mask decoder's work: more FLOPs.
    assert rows["decode_all_k"]["gflop"] > rows["baseline"]["gflop"]
    assert rows["pad_crop"]["gflop"] == pytest.approx(rows["baseline"]["gflop"])
    assert all(r["tracings"] == 1 and len(r["times_s"]) == 2 for r in rows.values())
    assert rows["baseline"]["vs_baseline"] == 1.0
    assert "x base" in result.stdout


def test_skipping_the_kth_mask_decode_changes_no_output():
    import types

    import numpy as np
    import tensorflow as tf

    from genesis_tf.models import Genesis

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import levers
    finally:
        sys.path.pop(0)
    model = Genesis(image_size=32, num_slots=4).build_for_images()
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[7, 8])
    shipped = model(images, training=False, deterministic=True)
    object.__setattr__(model, "_decode_masks", types.MethodType(levers._decode_all_masks,
                                                                model))
    reference = model(images, training=False, deterministic=True)
    for name in ("log_masks", "recon", "mask_logits"):
        np.testing.assert_allclose(getattr(shipped, name).numpy(),
                                   getattr(reference, name).numpy(), atol=1e-5, err_msg=name)
    np.testing.assert_allclose(model.loss_terms(images, shipped)["err"].numpy(),
                               model.loss_terms(images, reference)["err"].numpy(), rtol=1e-5)


def test_pad_crop_variant_computes_the_same_convolutions():
    import types

    import numpy as np
    import tensorflow as tf

    from genesis_tf.layers import GatedConv2D

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import levers
    finally:
        sys.path.pop(0)
    x = tf.random.stateless_normal([2, 9, 9, 3], seed=[1, 2])
    for layer in (GatedConv2D(4, 5, padding=2), GatedConv2D(4, 4, strides=2, padding=1),
                  GatedConv2D(4, 5, strides=2, padding=2, output_padding=1, transpose=True),
                  GatedConv2D(4, 3, padding=0, transpose=True)):
        layer(x)
        pad_crop = types.MethodType(levers._pad_crop_convolve, layer)
        np.testing.assert_allclose(layer._convolve(x).numpy(), pad_crop(x).numpy(),
                                   atol=1e-5)

"""Layers against direct NumPy implementations of the reference's (PyTorch's) semantics."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.layers import (
    BroadcastDecoder,
    GatedConv2D,
    MaskDecoder,
    MaskEncoder,
    StickBreaking,
)


def conv2d_reference(x, kernel, bias, stride, pad):
    """PyTorch Conv2d semantics: zeros `pad` on every side, then strided correlation.
    x [H, W, Cin], kernel [kh, kw, Cin, Cout]."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    out_h = (x.shape[0] - kh) // stride + 1
    out_w = (x.shape[1] - kw) // stride + 1
    out = np.zeros((out_h, out_w, kernel.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[i, j] = np.tensordot(patch, kernel, axes=3)
    return out + bias


def conv_transpose2d_reference(x, kernel, bias, stride, pad, output_pad):
    """PyTorch ConvTranspose2d semantics. x [H, W, Cin], kernel [kh, kw, Cout, Cin]."""
    kh, kw, cout, _ = kernel.shape
    h, w = x.shape[:2]
    full = np.zeros(((h - 1) * stride + kh + output_pad, (w - 1) * stride + kw + output_pad,
                     cout))
    for i in range(h):
        for j in range(w):
            full[i * stride:i * stride + kh, j * stride:j * stride + kw] += np.tensordot(
                kernel, x[i, j], axes=([3], [0]))
    out_h = (h - 1) * stride - 2 * pad + kh + output_pad
    out_w = (w - 1) * stride - 2 * pad + kw + output_pad
    return full[pad:pad + out_h, pad:pad + out_w] + bias


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("stride", [1, 2])
def test_gated_conv_matches_pytorch_padding(stride):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 8, 8, 3)).astype(np.float32)
    layer = GatedConv2D(4, 5, strides=stride, padding=2, normalize=False)
    layer(x)
    kernel = layer.conv.kernel.numpy()
    bias = rng.normal(size=(8,)).astype(np.float32)
    layer.conv.bias.assign(bias)
    got = layer(x).numpy()[0]
    full = conv2d_reference(x[0], kernel, bias, stride, 2)
    expected = full[..., :4] * sigmoid(full[..., 4:])
    assert got.shape == (8 // stride, 8 // stride, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_gated_transposed_conv_matches_pytorch_padding(stride):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    layer = GatedConv2D(2, 5, strides=stride, padding=2, output_padding=stride - 1,
                        transpose=True, normalize=False)
    layer(x)
    kernel = layer.conv.kernel.numpy()
    bias = rng.normal(size=(4,)).astype(np.float32)
    layer.conv.bias.assign(bias)
    got = layer(x).numpy()[0]
    full = conv_transpose2d_reference(x[0], kernel, bias, stride, 2, stride - 1)
    expected = full[..., :2] * sigmoid(full[..., 2:])
    assert got.shape == (4 * stride, 4 * stride, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Stride 1 runs as a conv with the flipped kernel: its gradients are the transposed
    # conv op's.
    assert layer._transpose_as_conv() == (stride == 1)
    x = tf.constant(x)
    pad = [[0, 0], [2, 2 - (stride - 1)], [2, 2 - (stride - 1)], [0, 0]]
    grads = []
    for fn in (lambda: layer._convolve(x),
               lambda: tf.nn.conv2d_transpose(x, layer.conv.kernel, [1, 4 * stride,
                                                                     4 * stride, 4],
                                              stride, pad) + layer.conv.bias):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(fn()))
        grads.append(tape.gradient(loss, [x, layer.conv.kernel]))
    for mine, theirs in zip(*grads, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("transpose", [False, True])
def test_full_window_convs_are_matmuls_with_the_convs_values_and_gradients(transpose):
    """The encoder head (kernel = input size) and the decoder stem (1×1 input) run as one
    matmul: same outputs as PyTorch's conv, same gradients as TensorFlow's conv op."""
    rng = np.random.default_rng(2)
    size = 1 if transpose else 6
    x = tf.constant(rng.normal(size=(3, size, size, 4)).astype(np.float32))
    layer = GatedConv2D(5, 6, transpose=transpose, normalize=False)
    layer(x)
    assert layer._full_window(x)
    kernel = layer.conv.kernel.numpy()
    bias = rng.normal(size=(10,)).astype(np.float32)
    layer.conv.bias.assign(bias)
    for i in range(3):
        full = (conv_transpose2d_reference(x[i].numpy(), kernel, bias, 1, 0, 0) if transpose
                else conv2d_reference(x[i].numpy(), kernel, bias, 1, 0))
        np.testing.assert_allclose(layer(x)[i].numpy(),
                                   full[..., :5] * sigmoid(full[..., 5:]), atol=1e-5)

    def conv_op(inputs, k):  # TensorFlow's own conv ops on the same weights
        if transpose:
            return tf.nn.conv2d_transpose(inputs, k, [3, 6, 6, 10], 1, "VALID")
        return tf.nn.conv2d(inputs, k, 1, "VALID")

    weights = tf.constant(rng.normal(size=(3, 6, 6, 10) if transpose else (3, 1, 1, 10)),
                          tf.float32)
    grads = []
    for fn in (lambda: layer._full_window_product(x, layer.conv.kernel),
               lambda: conv_op(x, layer.conv.kernel)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(fn()) * weights)
        grads.append(tape.gradient(loss, [x, layer.conv.kernel]))
    for mine, theirs in zip(*grads, strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)
    assert not GatedConv2D(5, 6, padding=1)._full_window(tf.zeros([1, 6, 6, 4]))
    assert not GatedConv2D(5, 3)._full_window(tf.zeros([1, 6, 6, 4]))


def test_gated_conv_normalises_both_halves_in_training():
    x = tf.random.stateless_normal([8, 6, 6, 2], seed=[1, 1]) * 5 + 3
    layer = GatedConv2D(3, 3, padding=1)
    y = layer(x, training=True)
    conv = layer._convolve(x)
    h, g = tf.split(conv, 2, axis=-1)

    def standardise(t):
        mean, var = tf.nn.moments(t, axes=[0, 1, 2])
        return (t - mean) / tf.sqrt(var + 1e-5)

    expected = standardise(h) * tf.sigmoid(standardise(g))
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-4)
    assert layer.h_norm.epsilon == 1e-5 and layer.h_norm.momentum == pytest.approx(0.9)


@pytest.mark.parametrize("shape", [[6, 5, 5, 3], [16, 4]])
def test_batch_norm_has_pytorchs_running_statistics(shape):
    from genesis_tf.layers.normalization import BatchNorm

    x = tf.random.stateless_normal(shape, seed=[2, 3]) * 2 + 1
    norm = BatchNorm(name="bn")
    y = norm(x, training=True)
    flat = x.numpy().reshape(-1, shape[-1]).astype(np.float64)
    # Normalised with the biased batch variance ...
    expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
    np.testing.assert_allclose(y.numpy().reshape(flat.shape), expected, atol=1e-4)
    # ... the running variance takes the unbiased one, with weight 0.1 (torch.nn.BatchNorm).
    np.testing.assert_allclose(norm.moving_mean.numpy(), 0.1 * flat.mean(0), rtol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), 0.9 + 0.1 * flat.var(0, ddof=1),
                               rtol=1e-4)
    # Inference uses the running statistics.
    z = norm(x, training=False).numpy().reshape(flat.shape)
    running = (flat - norm.moving_mean.numpy()) / np.sqrt(norm.moving_variance.numpy() + 1e-5)
    np.testing.assert_allclose(z, running, atol=1e-4)


def test_stick_breaking_equals_the_product_formula():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 4, 3, 3, 1)).astype(np.float32) * 3
    log_masks, log_scopes = StickBreaking()(logits)
    s = sigmoid(logits.astype(np.float64))
    scope = np.ones((2, 3, 3, 1))
    masks = []
    for k in range(4):
        masks.append(scope * s[:, k])
        scope = scope * (1 - s[:, k])
    masks.append(scope)
    np.testing.assert_allclose(np.exp(log_masks.numpy()), np.stack(masks, 1), atol=1e-6)
    np.testing.assert_allclose(np.exp(log_masks.numpy()).sum(1), 1.0, atol=1e-6)
    assert log_scopes.shape == (2, 5, 3, 3, 1)


def test_stick_breaking_is_stable_for_extreme_logits():
    log_masks, _ = StickBreaking()(tf.constant([[[[[80.0]]], [[[-80.0]]]]]))
    assert np.all(np.isfinite(log_masks.numpy()))
    np.testing.assert_allclose(tf.reduce_logsumexp(log_masks, 1).numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_mask_encoder_and_decoder_sizes(size):
    features = MaskEncoder(size)(tf.zeros([1, size, size, 3]))
    assert features.shape == (1, 256)
    logits = MaskDecoder(size)(tf.zeros([2, 64]))
    assert logits.shape == (2, size, size, 1)


def test_broadcast_decoder_coordinates_and_size():
    decoder = BroadcastDecoder(8, out_channels=3, output_activation=None)
    z = tf.zeros([2, 5])
    out = decoder(z)
    assert out.shape == (2, 8, 8, 3)
    # With z = 0 the output depends only on the coordinate grid: rows differ, and the
    # grid is the reference's ij meshgrid (first channel varies along H).
    first_conv = decoder.convs[0]
    assert first_conv.kernel.shape[2] == 5 + 2
    assert not np.allclose(out.numpy()[0, 0], out.numpy()[0, -1])
    # Same input, same output; oneDNN may block the two batch rows differently (last-bit
    # differences), so not bit-for-bit.
    np.testing.assert_allclose(out.numpy()[0], out.numpy()[1], rtol=1e-5, atol=1e-6)

"""Convolutions that stay on TensorFlow's fast CPU kernels, in float32 and mixed_bfloat16.

**Padding.** TensorFlow 2.21 hands a conv and its two gradients to oneDNN only for "SAME"
and "VALID" padding. With EXPLICIT padding the gradients — and a transposed conv's
forward op, which *is* Conv2DBackpropInput — run on Eigen's generic kernels: a conv's
forward and backward take about 2x as long in float32 and 20-60x in bfloat16
(benchmarks/conv_padding.py; benchmarks/README.md, "The conv ops' padding"). So
PyTorch's padding, given here as explicit pads, is passed as "SAME" where that places the
windows identically (stride 1 with 2p = k - 1, the most common case), and otherwise as a
pad op before a "VALID" conv; a transposed conv runs "VALID" and is cropped.

**bfloat16 gradients.** Where the CPU has native bfloat16 arithmetic (AVX512-BF16), the
oneDNN bfloat16 gradient kernels are 1.3-1.8x faster than float32's; elsewhere (AVX2
only) TensorFlow emulates them, 16-27x slower. Which applies is measured once per
process (``bfloat16_gradients_native``); where they are emulated, ``conv2d`` in bfloat16
runs its forward pass in bfloat16 and both gradients in float32, and ``conv2d_transpose``
runs in float32 between two casts.

Under float32 (the default) both are the plain TensorFlow ops, with the padding above.
"""
import functools
import time

import tensorflow as tf

# bfloat16 gradient kernels count as native when they take less than this multiple of
# float32's time: native ones measured 0.55-0.75x (AVX512-BF16), emulated ones 16-27x (AVX2).
NATIVE_BFLOAT16_MAX_SLOWDOWN = 2.0


@functools.cache
def bfloat16_gradients_native():
    """True when this machine's bfloat16 conv-gradient kernels are not much slower than
    float32's (measured: both gradient ops of a 3x3 conv, 32 channels, 16x16, batch 8;
    a few tens of milliseconds, once per process)."""

    def seconds(dtype):
        x = tf.cast(tf.random.stateless_normal([8, 16, 16, 32], seed=[0, 1]), dtype)
        dy = tf.cast(tf.random.stateless_normal([8, 16, 16, 32], seed=[0, 2]), dtype)
        kernel = tf.cast(tf.random.stateless_normal([3, 3, 32, 32], seed=[0, 3]), dtype)

        @tf.function
        def gradients():
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 1, 1, 1],
                padding="SAME")
            dk = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=[1, 1, 1, 1],
                padding="SAME")
            return dx, dk

        gradients()  # trace
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            [t.numpy() for t in gradients()]
            best = min(best, time.perf_counter() - start)
        return best

    with tf.init_scope():  # eager, even when first asked while a tf.function traces
        return seconds(tf.bfloat16) < NATIVE_BFLOAT16_MAX_SLOWDOWN * seconds(tf.float32)


def _strides(strides):
    return [strides, strides] if isinstance(strides, int) else [int(s) for s in strides]


def _explicit_pairs(padding):
    """[(top, bottom), (left, right)] of tf.nn's explicit NHWC padding; None for a string."""
    if isinstance(padding, str):
        return None
    pairs = [tuple(int(p) for p in pair) for pair in padding]
    if len(pairs) != 4 or pairs[0] != (0, 0) or pairs[3] != (0, 0):
        raise ValueError(f"explicit padding must be [[0, 0], [t, b], [l, r], [0, 0]], "
                         f"got {padding}")
    return pairs[1:3]


def _same_places_windows_like(size, kernel, stride, before, after):
    """True when "SAME" padding gives the windows that (before, after) give: the same
    number of outputs and the same zeros in front (extra zeros at the end go unread)."""
    if size is None or kernel is None:
        return False
    outputs = (size + before + after - kernel) // stride + 1
    same_outputs = -(-size // stride)
    same_before = max((same_outputs - 1) * stride + kernel - size, 0) // 2
    return outputs == same_outputs and before == same_before


def _fast_padding(x, kernel_shape, strides, padding):
    """(x, padding) with the explicit padding replaced by "SAME", "VALID" or a pad op."""
    pairs = _explicit_pairs(padding)
    if pairs is None:
        return x, padding.upper()
    if all(p == (0, 0) for p in pairs):
        return x, "VALID"
    if all(_same_places_windows_like(x.shape[1 + i], kernel_shape[i], s, *pairs[i])
           for i, s in enumerate(_strides(strides))):
        return x, "SAME"
    return tf.pad(x, [[0, 0], list(pairs[0]), list(pairs[1]), [0, 0]]), "VALID"


def conv2d(x, kernel, strides, padding):
    """tf.nn.conv2d (NHWC; strides an int or a pair; padding "SAME", "VALID" or explicit
    [[0, 0], [t, b], [l, r], [0, 0]]) on the oneDNN kernels (see the module doc)."""
    kernel = tf.cast(kernel, x.dtype)  # a tensor: custom_gradient must not see a variable
    x, padding = _fast_padding(x, kernel.shape, strides, padding)
    if x.dtype != tf.bfloat16 or bfloat16_gradients_native():
        return tf.nn.conv2d(x, kernel, strides, padding)
    op_strides = [1, *_strides(strides), 1]

    @tf.custom_gradient
    def bf16_forward_f32_backward(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides, padding)

        def grad(dy):
            dy32 = tf.cast(dy, tf.float32)
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=tf.cast(kernel, tf.float32), out_backprop=dy32,
                strides=op_strides, padding=padding)
            dk = tf.raw_ops.Conv2DBackpropFilter(
                input=tf.cast(x, tf.float32), filter_sizes=tf.shape(kernel), out_backprop=dy32,
                strides=op_strides, padding=padding)
            return tf.cast(dx, x.dtype), tf.cast(dk, kernel.dtype)

        return y, grad

    return bf16_forward_f32_backward(x, kernel)


def conv2d_transpose(x, kernel, output_shape, strides, padding):
    """tf.nn.conv2d_transpose on the oneDNN kernels: explicit padding (the forward conv's,
    i.e. PyTorch's crop) as a "VALID" transposed conv and a crop (its size follows from the
    padding; `output_shape` is then unused); in bfloat16 computed in float32 where
    bfloat16 gradients are emulated (see the module doc)."""
    dtype = x.dtype
    if dtype == tf.bfloat16 and not bfloat16_gradients_native():
        x = tf.cast(x, tf.float32)
    kernel = tf.cast(kernel, x.dtype)
    pairs = _explicit_pairs(padding)
    if pairs is None:
        y = tf.nn.conv2d_transpose(x, kernel, output_shape, strides, padding.upper())
    else:
        (top, bottom), (left, right) = pairs
        stride_h, stride_w = _strides(strides)
        shape = tf.shape(x)
        full = tf.stack([shape[0], (shape[1] - 1) * stride_h + kernel.shape[0],
                         (shape[2] - 1) * stride_w + kernel.shape[1], kernel.shape[2]])
        y = tf.nn.conv2d_transpose(x, kernel, full, strides, "VALID")
        # tf.slice, not y[...]: its gradient is a Pad; a strided slice's, StridedSliceGrad,
        # is a generic kernel: 5.6% of the demo-size training step's kernel time.
        y = tf.slice(y, [0, top, left, 0],
                     [-1, full[1] - top - bottom, full[2] - left - right, -1])
    return tf.cast(y, dtype)

"""Convolutions that stay fast under mixed_bfloat16 on CPUs.

TensorFlow 2.21's CPU kernels compute the forward convolution in bfloat16 at full speed,
but its two gradient kernels (Conv2DBackpropInput, Conv2DBackpropFilter) fall back to an
emulated path in bfloat16: 40-1000x slower than in float32 (benchmarks/README.md,
"bfloat16"). That made a mixed_bfloat16 GENESIS step 12x slower than float32. So in
bfloat16:

- ``conv2d`` runs its forward pass in bfloat16 and both gradients in float32;
- ``conv2d_transpose``, whose forward pass *is* Conv2DBackpropInput, runs in float32
  between two casts (its input gradient is then a float32 Conv2D).

Under float32 (the default) both are the plain TensorFlow ops.
"""
import tensorflow as tf


def _op_padding(padding):
    """tf.nn's padding ("SAME", "VALID" or [[0, 0], [t, b], [l, r], [0, 0]]) as the raw
    ops' (padding, explicit_paddings)."""
    if isinstance(padding, str):
        return padding.upper(), []
    return "EXPLICIT", [int(p) for pair in padding for p in pair]


def _strides(strides):
    return [1, strides, strides, 1] if isinstance(strides, int) else [1, *strides, 1]


def conv2d(x, kernel, strides, padding):
    """tf.nn.conv2d (NHWC, ints or pairs for strides); float32 gradients in bfloat16."""
    if x.dtype != tf.bfloat16:
        return tf.nn.conv2d(x, kernel, strides, padding)
    op_padding, explicit = _op_padding(padding)
    op_strides = _strides(strides)
    # A tensor, not the layer's variable: custom_gradient would otherwise want to
    # differentiate the variable itself.
    kernel = tf.cast(kernel, x.dtype)

    @tf.custom_gradient
    def bf16_forward_f32_backward(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides, padding)

        def grad(dy):
            dy32 = tf.cast(dy, tf.float32)
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=tf.cast(kernel, tf.float32), out_backprop=dy32,
                strides=op_strides, padding=op_padding, explicit_paddings=explicit)
            dk = tf.raw_ops.Conv2DBackpropFilter(
                input=tf.cast(x, tf.float32), filter_sizes=tf.shape(kernel), out_backprop=dy32,
                strides=op_strides, padding=op_padding, explicit_paddings=explicit)
            return tf.cast(dx, x.dtype), tf.cast(dk, kernel.dtype)

        return y, grad

    return bf16_forward_f32_backward(x, kernel)


def conv2d_transpose(x, kernel, output_shape, strides, padding):
    """tf.nn.conv2d_transpose; in bfloat16 computed in float32 (see the module doc)."""
    if x.dtype != tf.bfloat16:
        return tf.nn.conv2d_transpose(x, kernel, output_shape, strides, padding)
    y = tf.nn.conv2d_transpose(tf.cast(x, tf.float32), tf.cast(kernel, tf.float32),
                               output_shape, strides, padding)
    return tf.cast(y, x.dtype)

"""Keras dtype policies for training: float32 (the default), mixed_bfloat16, mixed_float16.

Mixed precision pays only on hardware with fast low-precision arithmetic: bfloat16 on CPUs
with AVX512-BF16 or AMX (1.6-1.8x faster per GENESIS step there, benchmarks/README.md) and
float16 on GPUs. Elsewhere it is no faster, or, where TensorFlow emulates a kernel, many
times slower, so `check_hardware` measures a bfloat16 convolution against float32 before
training and warns when bfloat16 does not pay. (Where TensorFlow 2.21 emulates the
bfloat16 conv gradients, on CPUs without AVX512-BF16, they run in float32:
layers/conv_ops.py.)
"""
import time
import warnings

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# bfloat16 counts as paying when its conv is this much faster: the measurement varies by
# about ±5% between calls, and the rest of the step (casts, float32 ops) gains nothing.
MIN_BFLOAT16_SPEEDUP = 1.2


def validate(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS} "
                         "(train.precision in the gin file)")


def with_policy(precision, build):
    """build() under Keras' global dtype policy `precision`; the policy is restored after
    (the layers keep theirs), so nothing else in the process is affected."""
    validate(precision)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        return build()
    finally:
        keras.mixed_precision.set_global_policy(previous)


def bfloat16_speedup(repeats=3):
    """Measured here: float32 time / mixed_bfloat16 time of one GENESIS-sized gated conv
    (5x5, 32 -> 64 channels, 32x32, batch 32), forward and both gradients, through the
    package's conv ops. > 1 means bfloat16 is faster on this machine. About a second."""
    from genesis_tf.layers import conv_ops  # the layers' own path

    def timed(dtype):
        x = tf.cast(tf.random.stateless_normal([32, 32, 32, 32], seed=[0, 1]), dtype)
        kernel = tf.cast(tf.random.stateless_normal([5, 5, 32, 64], seed=[0, 2]), dtype)

        @tf.function
        def forward_backward():
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = conv_ops.conv2d(x, kernel, 1, "SAME")
            return tape.gradient(y, [x, kernel])

        forward_backward()  # trace
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            [g.numpy() for g in forward_backward()]
            times.append(time.perf_counter() - start)
        return min(times)

    return timed(tf.float32) / timed(tf.bfloat16)


def check_hardware(precision, has_gpu=None, speedup=None):
    """Warns when `precision` will not be faster than float32 here; returns the warning
    text or None. mixed_bfloat16 on a CPU is *measured* (bfloat16_speedup, or `speedup`
    if given): CPU flags say little, since TensorFlow's kernels for a given op may be
    native or emulated independently of them (benchmarks/README.md, "Mixed precision")."""
    validate(precision)
    if precision == "float32":
        return None
    if has_gpu is None:
        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if has_gpu:
        return None
    if precision == "mixed_float16":
        message = ("precision 'mixed_float16' without a GPU: TensorFlow emulates float16 "
                   "kernels on CPUs and training will be many times slower than float32. "
                   "Use train.precision = 'float32' here.")
    else:
        speedup = bfloat16_speedup() if speedup is None else speedup
        if speedup >= MIN_BFLOAT16_SPEEDUP:
            return None
        message = (f"precision 'mixed_bfloat16': on this CPU a bfloat16 convolution "
                   f"(forward and gradients) measured {speedup:.2f}x the speed of float32 "
                   f"(below {MIN_BFLOAT16_SPEEDUP}x), so training will not be faster than "
                   "float32: no native bfloat16 arithmetic here (AVX512-BF16, AMX). Use "
                   "train.precision = 'float32' here.")
    warnings.warn(message, RuntimeWarning, stacklevel=2)
    return message

"""Keras dtype policies for training: float32 (the default), mixed_bfloat16, mixed_float16.

Mixed precision pays only on hardware with fast low-precision arithmetic: bfloat16 on CPUs
with AVX512-BF16 or AMX (1.4x faster per GENESIS step there, benchmarks/README.md) and
float16 on GPUs. Elsewhere TensorFlow emulates the low-precision kernels — a GENESIS step
in mixed_bfloat16 on an AVX2-only CPU took 118 s instead of 10 — so `check_hardware` warns.
"""
import pathlib
import warnings

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


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


def _cpu_flags():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return None  # not Linux: unknown
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def check_hardware(precision, cpu_flags=None, has_gpu=None):
    """Warns when `precision` has no fast kernels here; returns the warning text or None."""
    validate(precision)
    if precision == "float32":
        return None
    if has_gpu is None:
        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if has_gpu:
        return None
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    if precision == "mixed_bfloat16" and (flags is None or
                                          flags & {"avx512_bf16", "amx_bf16"}):
        return None
    message = (f"precision {precision!r} without a GPU"
               + ("" if precision == "mixed_float16" else
                  " on a CPU without AVX512-BF16 or AMX")
               + ": TensorFlow emulates these kernels and training will be many times "
               "slower than float32. Use train.precision = 'float32' here.")
    warnings.warn(message, RuntimeWarning, stacklevel=2)
    return message

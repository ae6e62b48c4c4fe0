"""Group and layer normalisation with PyTorch's semantics (GENESIS-V2's encoder and heads).

``torch.nn.GroupNorm(G, C)``: per image, the C channels are split into G contiguous groups
and each group is normalised over its channels and all pixels with the biased variance;
then a per-channel affine γ (init 1), β (init 0). ``torch.nn.LayerNorm(C)``: the same over
the last axis alone. Both use ε = 1e-5 (Keras' layers default to 1e-3). Moments are taken
in float32, so that a mixed-precision policy changes the convolutions, not the statistics.
"""
import tensorflow as tf
from keras import ops

from genesis_tf.layers import tracking


class AffineNorm(tracking.Layer):
    """Normalises, then y·γ + β per channel (last axis); subclasses give call()."""

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def _affine(self, y, dtype):
        y = y * ops.cast(self.gamma, "float32") + ops.cast(self.beta, "float32")
        return ops.cast(y, dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


class GroupNorm(AffineNorm):
    """[N, H, W, C] -> same shape; C must be a multiple of ``groups``."""

    def __init__(self, groups=8, epsilon=1e-5, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        self.groups = groups

    def build(self, input_shape):
        if input_shape[-1] % self.groups:
            raise ValueError(f"{self.name}: {input_shape[-1]} channels do not split into "
                             f"{self.groups} groups")
        super().build(input_shape)

    def call(self, x, channel_bias=None):
        """GroupNorm(x + channel_bias): channel_bias [C] (or None) is a preceding conv's
        bias, folded into the statistics and the offset instead of a pass of its own over x
        (centring x + b on the group mean μ is centring x on μ − b)."""
        # Statistics from per-channel sums over H and W (reductions that keep the channel
        # axis innermost, which TensorFlow's CPU kernels vectorise), combined per group on
        # the small [N, C] sums; then one scale and offset per image and channel. Half the
        # time of moments over a [N, H, W, G, C/G] view, forward and backward
        # (benchmarks/README.md, "GENESIS-V2").
        x32 = tf.cast(x, tf.float32)
        size = tf.cast(tf.shape(x32)[1] * tf.shape(x32)[2], tf.float32)
        sums = tf.reduce_sum(x32, axis=[1, 2])  # [N, C]
        if channel_bias is None:
            centre = self._group_mean(sums, size)  # [N, 1, 1, C]
        else:
            bias = tf.cast(channel_bias, tf.float32)
            centre = self._group_mean(sums + size * bias, size) - bias
        squares = tf.math.squared_difference(x32, centre)  # one pass, not a sub and a square
        variance = self._group_mean(tf.reduce_sum(squares, axis=[1, 2]), size)
        scale = tf.math.rsqrt(variance + self.epsilon) * tf.cast(self.gamma, tf.float32)
        offset = tf.cast(self.beta, tf.float32) - centre * scale
        return tf.cast(x32 * scale + offset, x.dtype)

    def _group_mean(self, channel_sums, pixels):
        """Per-channel sums [N, C] over `pixels` pixels -> each channel's group mean,
        [N, 1, 1, C]."""
        channels = channel_sums.shape[-1]
        per_group = channels // self.groups
        grouped = tf.reshape(channel_sums, [-1, self.groups, per_group])
        means = tf.reduce_sum(grouped, axis=-1, keepdims=True) / (pixels * per_group)
        return tf.reshape(tf.repeat(means, per_group, axis=-1), [-1, 1, 1, channels])

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


class LayerNorm(AffineNorm):
    """[..., C] -> same shape, normalised over the last axis."""

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean, variance = ops.moments(x32, axes=[-1], keepdims=True)
        return self._affine((x32 - mean) * ops.rsqrt(variance + self.epsilon), x.dtype)

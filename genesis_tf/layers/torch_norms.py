"""Group and layer normalisation with PyTorch's semantics (GENESIS-V2's encoder and heads).

``torch.nn.GroupNorm(G, C)``: per image, the C channels are split into G contiguous groups
and each group is normalised over its channels and all pixels with the biased variance;
then a per-channel affine γ (init 1), β (init 0). ``torch.nn.LayerNorm(C)``: the same over
the last axis alone. Both use ε = 1e-5 (Keras' layers default to 1e-3). Moments are taken
in float32, so that a mixed-precision policy changes the convolutions, not the statistics.
"""
from keras import ops

from genesis_tf.layers import tracking


class _AffineNorm(tracking.Layer):
    """Normalises, then y·γ + β per channel (last axis)."""

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


class GroupNorm(_AffineNorm):
    """[N, H, W, C] -> same shape; C must be a multiple of ``groups``."""

    def __init__(self, groups=8, epsilon=1e-5, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        self.groups = groups

    def build(self, input_shape):
        if input_shape[-1] % self.groups:
            raise ValueError(f"{self.name}: {input_shape[-1]} channels do not split into "
                             f"{self.groups} groups")
        super().build(input_shape)

    def call(self, x):
        x32 = ops.cast(x, "float32")
        shape = ops.shape(x32)
        grouped = ops.reshape(x32, (shape[0], shape[1], shape[2], self.groups, -1))
        mean, variance = ops.moments(grouped, axes=[1, 2, 4], keepdims=True)
        y = ops.reshape((grouped - mean) * ops.rsqrt(variance + self.epsilon), shape)
        return self._affine(y, x.dtype)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


class LayerNorm(_AffineNorm):
    """[..., C] -> same shape, normalised over the last axis."""

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean, variance = ops.moments(x32, axes=[-1], keepdims=True)
        return self._affine((x32 - mean) * ops.rsqrt(variance + self.epsilon), x.dtype)

"""GENESIS-V2's gated semi-convolutional pixel embedding (after Novotny et al. 2018).

A 1×1 conv (with bias) maps the seg head's features to D = 8 channels; the result is
multiplied by a learnt scalar gate that starts at 0 and the pixel coordinates
``linspace(−1, 1, S)`` are added to the last two channels (channel D−2 varies along rows,
D−1 along columns, as the reference's "ij" meshgrid). At initialisation the embedding is
therefore the coordinates alone, and the conv below it receives no gradient until the
first optimiser step has moved the gate (the reference's behaviour, kept on purpose).
With ``semiconv=False`` it is the plain 1×1 conv: no gate, no coordinates.
"""
from keras import ops

from genesis_tf.layers import tracking
from genesis_tf.layers.initializers import TorchConv2D


def coordinate_grid(size, dtype="float32"):
    """[size, size, 2]: channel 0 varies along H, channel 1 along W, both in [−1, 1]."""
    line = ops.linspace(-1.0, 1.0, size)
    rows = ops.broadcast_to(line[:, None], (size, size))
    cols = ops.broadcast_to(line[None, :], (size, size))
    return ops.cast(ops.stack([rows, cols], axis=-1), dtype)


class SemiConvEmbedding(tracking.Layer):
    """Features [N, S, S, F] -> (embedding [N, S, S, D], learnt offsets δ [N, S, S, 2]),
    both float32."""

    def __init__(self, embedding_size=8, semiconv=True, **kwargs):
        super().__init__(**kwargs)
        if embedding_size < 2:
            raise ValueError(f"embedding_size must be >= 2 (two coordinate channels), got "
                             f"{embedding_size}")
        self.embedding_size = embedding_size
        self.semiconv = semiconv
        self.conv = TorchConv2D(embedding_size, 1, name="conv")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.gate = (self.add_weight(shape=(), initializer="zeros", name="gate")
                     if self.semiconv else None)

    def call(self, features):
        # float32 from here: in bfloat16, neighbouring coordinates at 128×128 (2/127
        # apart) would sit one or two rounding steps from each other.
        x = ops.cast(self.conv(features), "float32")
        if not self.semiconv:
            return x, x[..., -2:]
        x = x * ops.cast(self.gate, "float32")
        size = ops.shape(features)[1]
        grid = coordinate_grid(size)  # [S, S, 2]
        zeros = ops.zeros((size, size, self.embedding_size - 2))
        return x + ops.concatenate([zeros, grid], axis=-1)[None], x[..., -2:]

    def get_config(self):
        return {**super().get_config(), "embedding_size": self.embedding_size,
                "semiconv": self.semiconv}

"""GENESIS-V2's per-slot decoder: a small spatial broadcast decoder with transposed convs.

z [N, D] is tiled to S/16 × S/16 (4×4 at 64×64), two coordinate channels
``linspace(−1, 1, S/16)`` are appended (rows first), and four blocks of
[5×5 transposed conv, stride 2 (PyTorch padding 2, output_padding 1: crop 2 before and 1
after) -> group norm (8 groups, ε 1e-5) -> ReLU] double the side to S; a 1×1 conv gives
4 channels: RGB logits (the model applies a sigmoid) and one mask logit. Each slot is
decoded alone; group norm has no batch coupling, so decoding B·K slots in one batch is
the same as one at a time. Keras' "same" padding would place the transposed conv's
output one pixel off PyTorch's, hence the explicit crop (layers/conv_ops.py).
"""
import tensorflow as tf
from keras import ops

from genesis_tf.layers import conv_ops, tracking
from genesis_tf.layers.initializers import TorchConv2D, TorchConv2DTranspose
from genesis_tf.layers.semiconv import coordinate_grid
from genesis_tf.layers.torch_norms import GroupNorm

UPSAMPLINGS = 4
KERNEL, PADDING = 5, [[0, 0], [2, 1], [2, 1], [0, 0]]  # PyTorch p = 2, output_padding = 1


class SlotBroadcastDecoder(tracking.Layer):
    """z [N, D] -> [N, S, S, 4] (compute dtype): 3 RGB logits and 1 mask logit."""

    def __init__(self, image_size=64, filters=64, **kwargs):
        super().__init__(**kwargs)
        if image_size % 2 ** UPSAMPLINGS:
            raise ValueError(f"image_size must be a multiple of {2 ** UPSAMPLINGS}, got "
                             f"{image_size}")
        self.image_size = image_size
        self.filters = filters
        self.grid_size = image_size // 2 ** UPSAMPLINGS
        self.convs = [TorchConv2DTranspose(filters, KERNEL, strides=2, name=f"conv_{i}")
                      for i in range(UPSAMPLINGS)]
        self.norms = [GroupNorm(8, 1e-5, name=f"norm_{i}") for i in range(UPSAMPLINGS)]
        self.out = TorchConv2D(4, 1, name="out")

    def build(self, input_shape):
        channels, size = input_shape[-1] + 2, self.grid_size
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.build((None, size, size, channels))
            channels, size = self.filters, 2 * size
            norm.build((None, size, size, channels))
        self.out.build((None, size, size, channels))

    def call(self, z):
        n, g = ops.shape(z)[0], self.grid_size
        tiled = ops.broadcast_to(z[:, None, None, :], (n, g, g, z.shape[-1]))
        grid = ops.broadcast_to(coordinate_grid(g, tiled.dtype)[None], (n, g, g, 2))
        x = ops.concatenate([tiled, grid], axis=-1)  # [N, g, g, D + 2]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            kernel = ops.cast(conv.kernel, x.dtype)
            y = conv_ops.conv2d_transpose(x, kernel, None, 2, PADDING)
            side = 2 * x.shape[1] if x.shape[1] is not None else None
            y = tf.ensure_shape(y, [None, side, side, self.filters])
            x = ops.relu(norm(y, channel_bias=conv.bias))  # the bias added in the norm
        return self.out(x)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size,
                "filters": self.filters}

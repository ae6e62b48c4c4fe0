"""Spatial broadcast decoder (Watters et al. 2019).

z [N, D] is tiled to (H+p)×(W+p), two coordinate channels in [−1, 1] are appended (first
varying along rows, as the reference's "ij" meshgrid), and "valid" 3×3 convolutions bring
it back to H×W. p = 2 × the number of 3×3 convs.
"""
import keras
from keras import ops

from genesis_tf.layers import tracking
from genesis_tf.layers.initializers import TorchConv2D


class BroadcastDecoder(tracking.Layer):
    """Latent [N, D] -> [N, H, W, out_channels] (after ``output_activation``)."""

    def __init__(
        self,
        image_size=64,
        out_channels=3,
        filters=32,
        num_convs=4,
        activation="elu",
        hidden_1x1=None,
        output_activation="sigmoid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.grid_size = image_size + 2 * num_convs
        self.convs = [
            TorchConv2D(filters, 3, padding="valid", activation=activation,
                                name=f"conv_{i}")
            for i in range(num_convs)
        ]
        # BD-VAE adds a 1x1 conv with activation before the output conv.
        self.hidden = (
            TorchConv2D(hidden_1x1, 1, activation=activation, name="hidden_1x1")
            if hidden_1x1
            else None
        )
        self.out = TorchConv2D(out_channels, 1, name="out")
        self.output_activation = keras.activations.get(output_activation)

    def call(self, z):
        n = ops.shape(z)[0]
        g = self.grid_size
        tiled = ops.broadcast_to(z[:, None, None, :], (n, g, g, ops.shape(z)[-1]))
        line = ops.linspace(-1.0, 1.0, g)
        rows = ops.broadcast_to(line[:, None], (g, g))  # varies along H
        cols = ops.broadcast_to(line[None, :], (g, g))  # varies along W
        coords = ops.cast(ops.stack([rows, cols], axis=-1), tiled.dtype)  # [g, g, 2]
        coords = ops.broadcast_to(coords[None], (n, g, g, 2))
        x = ops.concatenate([tiled, coords], axis=-1)  # [N, g, g, D + 2]
        for conv in self.convs:
            x = conv(x)
        if self.hidden is not None:
            x = self.hidden(x)
        return self.output_activation(self.out(x))  # [N, H, W, out_channels]

"""Component VAE of GENESIS: q(z^c_k | x, m_k) and p(x_k | z^c_k).

Encoder: concat(log m_k, x) (4 channels) -> four 3×3 stride-2 convs (32, 32, 64, 64, ELU,
PyTorch padding 1) -> flatten -> Dense 256 ELU -> Dense 2·D (mean, pre-scale).
Decoder: the spatial broadcast decoder with four 3×3 convs of 32 channels, ELU, sigmoid.
"""
import keras
from keras import ops

from genesis_tf.layers import tracking
from genesis_tf.layers.broadcast_decoder import BroadcastDecoder
from genesis_tf.layers.initializers import TorchConv2D, TorchDense
from genesis_tf.layers.mask_vae import positive_scale


class ComponentEncoder(tracking.Layer):
    """[N, H, W, 4] -> (mean [N, D], scale [N, D])."""

    def __init__(self, latent_size=16, channels=(32, 32, 64, 64), hidden=256,
                 activation="elu", **kwargs):
        super().__init__(**kwargs)
        self.latent_size = latent_size
        self.pads = [keras.layers.ZeroPadding2D(1) for _ in channels]
        self.convs = [
            TorchConv2D(c, 3, strides=2, padding="valid", activation=activation,
                                name=f"conv_{i}")
            for i, c in enumerate(channels)
        ]
        self.flatten = keras.layers.Flatten()
        self.hidden = TorchDense(hidden, activation=activation, name="hidden")
        self.head = TorchDense(2 * latent_size, name="head")

    def call(self, x):
        for pad, conv in zip(self.pads, self.convs, strict=True):
            x = conv(pad(x))
        x = self.hidden(self.flatten(x))
        mean, pre_scale = ops.split(self.head(x), 2, axis=-1)
        return mean, positive_scale(pre_scale)


class ComponentVAE(tracking.Layer):
    """Networks of the component VAE; sampling happens in the model."""

    def __init__(self, image_size=64, latent_size=16, **kwargs):
        super().__init__(**kwargs)
        self.encoder = ComponentEncoder(latent_size, name="encoder")
        self.decoder = BroadcastDecoder(image_size, out_channels=3, filters=32,
                                        name="decoder")

    def encode(self, log_masks, images):
        """log_masks [N, H, W, 1], images [N, H, W, 3] -> (mean, scale) [N, D]."""
        return self.encoder(ops.concatenate([log_masks, images], axis=-1))

    def decode(self, z):
        """z [N, D] -> component means [N, H, W, 3] in (0, 1)."""
        return self.decoder(z)

    def call(self, log_masks, images):
        return self.encode(log_masks, images)

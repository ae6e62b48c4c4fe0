"""Mask encoder, mask decoder and the sequential inference LSTM of GENESIS.

Sizes (GENESIS paper, appendix B; reference code): five gated 5×5 convs with 32, 32, 64,
64, 64 channels, then a gated L×L "valid" conv to 256 features; the decoder mirrors it
from a 1×1 latent through a gated L×L transposed conv to 64 channels, five gated 5×5
transposed convs with 64, 32, 32, 32, 32 channels, and a 1×1 conv to one attention logit.
"""
from keras import ops

from genesis_tf.layers import tracking
from genesis_tf.layers.gated_conv import GatedConv2D
from genesis_tf.layers.initializers import TorchConv2D, TorchDense, TorchLSTMCell

# image size -> (encoder strides, size L of the last/first "valid" kernel)
ARCHITECTURES = {
    32: ([1, 2, 1, 2, 1], 8),
    64: ([1, 2, 1, 2, 1], 16),
    128: ([2, 2, 2, 1, 1], 16),
    256: ([2, 2, 2, 2, 1], 16),
}
ENCODER_CHANNELS = [32, 32, 64, 64, 64]
DECODER_CHANNELS = [64, 32, 32, 32, 32]
KERNEL = 5
PAD = 2


def architecture(image_size):
    if image_size not in ARCHITECTURES:
        raise ValueError(
            f"image_size {image_size} is not supported; the mask VAE is defined for "
            f"{sorted(ARCHITECTURES)} pixel square images (resize in the input pipeline)"
        )
    return ARCHITECTURES[image_size]


class MaskEncoder(tracking.Layer):
    """Image [N, H, W, 3] -> features [N, feature_size]."""

    def __init__(self, image_size=64, feature_size=256, **kwargs):
        super().__init__(**kwargs)
        strides, last_kernel = architecture(image_size)
        self.image_size = image_size
        self.feature_size = feature_size
        self.blocks = [
            GatedConv2D(c, KERNEL, strides=s, padding=PAD, name=f"gated_conv_{i}")
            for i, (c, s) in enumerate(zip(ENCODER_CHANNELS, strides, strict=True))
        ]
        self.head = GatedConv2D(feature_size, last_kernel, normalize=False, name="head")

    def call(self, images, training=False):
        x = images
        for block in self.blocks:
            x = block(x, training=training)
        x = self.head(x, training=training)  # [N, 1, 1, F]
        return ops.reshape(x, (-1, self.feature_size))


class MaskDecoder(tracking.Layer):
    """Latent [N, D] -> attention logits [N, H, W, 1]."""

    def __init__(self, image_size=64, **kwargs):
        super().__init__(**kwargs)
        strides, first_kernel = architecture(image_size)
        self.image_size = image_size
        self.stem = GatedConv2D(
            DECODER_CHANNELS[0], first_kernel, transpose=True, normalize=False, name="stem"
        )
        self.blocks = [
            GatedConv2D(
                c,
                KERNEL,
                strides=s,
                padding=PAD,
                output_padding=s - 1,
                transpose=True,
                name=f"gated_deconv_{i}",
            )
            for i, (c, s) in enumerate(zip(DECODER_CHANNELS, strides[::-1], strict=True))
        ]
        self.to_logits = TorchConv2D(1, 1, name="to_logits")

    def call(self, z, training=False):
        x = ops.reshape(z, (-1, 1, 1, ops.shape(z)[-1]))  # [N, 1, 1, D]
        x = self.stem(x, training=training)  # [N, L, L, 64]
        for block in self.blocks:
            x = block(x, training=training)
        return self.to_logits(x)  # [N, H, W, 1]


def positive_scale(pre_sigma):
    """The reference's map to a standard deviation: softplus(x + 0.5) + 1e-8."""
    return ops.softplus(pre_sigma + 0.5) + 1e-8


class MaskPosterior(tracking.Layer):
    """The heads of q(z^m_k | x, z^m_<k).

    Step 1 reads the image features alone through two dense heads; steps 2..K run an LSTM
    cell on concat(features, z^m_{k-1}) and a dense layer split into mean and pre-scale.
    The caller loops over slots (K is static per trace) and carries the LSTM state.
    """

    def __init__(self, latent_size=64, lstm_units=128, **kwargs):
        super().__init__(**kwargs)
        self.latent_size = latent_size
        self.lstm_units = lstm_units
        self.first_mean = TorchDense(latent_size, name="first_mean")
        self.first_scale = TorchDense(latent_size, name="first_scale")
        self.lstm = TorchLSTMCell(lstm_units, name="lstm")
        self.head = TorchDense(2 * latent_size, name="head")

    def first(self, features):
        """features [N, F] -> (mean, scale) of z^m_1, each [N, D]."""
        return self.first_mean(features), positive_scale(self.first_scale(features))

    def initial_state(self, features):
        zeros = ops.zeros((ops.shape(features)[0], self.lstm_units), dtype=features.dtype)
        # LSTMCell wants the list [h, c]: one tensor gives wrong values, no error.
        return [zeros, zeros]

    def step(self, features, z_previous, state, training=False):
        """One step k >= 2 -> (mean, scale, new_state)."""
        inputs = ops.concatenate([features, ops.cast(z_previous, features.dtype)], axis=-1)
        output, state = self.lstm(inputs, state, training=training)
        mean, pre_scale = ops.split(self.head(output), 2, axis=-1)
        return mean, positive_scale(pre_scale), state

    def call(self, features, z_previous, state, training=False):
        return self.step(features, z_previous, state, training=training)

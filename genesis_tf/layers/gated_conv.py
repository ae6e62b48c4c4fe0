"""Gated (GLU) convolutions of Berg et al. (2018), with batch norm before the gate.

One convolution produces 2·C channels, split into ``h`` (first C) and ``g`` (last C):
``out = BN_h(h) · sigmoid(BN_g(g))``, or ``h · sigmoid(g)`` without normalisation.
Padding follows PyTorch's explicit convention (``padding`` zeros on every side;
transposed convs crop ``padding`` and add ``output_padding`` at the end), because Keras'
"same" padding places the extra row differently at stride 2.
"""
import keras
from keras import ops


def batch_norm(name=None):
    """Batch norm with PyTorch's constants (ε 1e-5, running-average weight 0.1).

    ``synchronized=True`` keeps moving statistics identical across replicas under
    tf.distribute; without it replica 0's copy drifts from the rest (PITFALLS.md).
    """
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=True, name=name
    )


class GatedConv2D(keras.layers.Layer):
    """Gated 2-D convolution or transposed convolution. Input/output [N, H, W, C]."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding=0,
        output_padding=0,
        transpose=False,
        normalize=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if transpose and output_padding >= max(strides, 1) and output_padding > 0:
            raise ValueError("output_padding must be smaller than the stride")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.output_padding = output_padding
        self.transpose = transpose
        self.normalize = normalize
        if transpose:
            self.conv = keras.layers.Conv2DTranspose(
                2 * filters, kernel_size, strides=strides, padding="valid", name="conv"
            )
            crop_end = padding - output_padding
            if crop_end < 0:
                raise ValueError("output_padding larger than padding is not supported")
            self.crop = (
                keras.layers.Cropping2D(((padding, crop_end), (padding, crop_end)))
                if padding or crop_end
                else None
            )
            self.pad = None
        else:
            self.conv = keras.layers.Conv2D(
                2 * filters, kernel_size, strides=strides, padding="valid", name="conv"
            )
            self.pad = keras.layers.ZeroPadding2D(padding) if padding else None
            self.crop = None
        self.h_norm = batch_norm("h_norm") if normalize else None
        self.g_norm = batch_norm("g_norm") if normalize else None

    def call(self, x, training=False):
        if self.pad is not None:
            x = self.pad(x)
        x = self.conv(x)
        if self.crop is not None:
            x = self.crop(x)
        h, g = ops.split(x, 2, axis=-1)
        if self.normalize:
            h = self.h_norm(h, training=training)
            g = self.g_norm(g, training=training)
        return h * ops.sigmoid(g)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            transpose=self.transpose,
            normalize=self.normalize,
        )
        return config

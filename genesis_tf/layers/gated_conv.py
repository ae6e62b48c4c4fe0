"""Gated (GLU) convolutions of Berg et al. (2018), with batch norm before the gate.

One convolution produces 2·C channels, split into ``h`` (first C) and ``g`` (last C):
``out = BN_h(h) · sigmoid(BN_g(g))``, or ``h · sigmoid(g)`` without normalisation.
Padding follows PyTorch's explicit convention (``padding`` zeros on every side;
transposed convs crop ``padding`` and add ``output_padding`` at the end), because Keras'
"same" padding places the extra row differently at stride 2. The padding goes to
layers/conv_ops.py as explicit pads, which runs it as "SAME" where that is the same, else
as a pad op and a "VALID" conv (a transposed conv: "VALID", then cropped): TensorFlow's
conv gradients with EXPLICIT padding run on slow generic kernels. The weights stay in
Keras Conv2D / Conv2DTranspose layers (subclasses with PyTorch's default initialisation,
genesis_tf/layers/initializers.py), named as before.

A convolution whose kernel covers its whole (unpadded) input — the mask encoder's L×L
head, and the transposed L×L stem of the mask decoder on a 1×1 latent — is one matrix
product, and runs as one: TensorFlow's conv kernels took about 10× (at 64×64, 16×) longer
on these shapes, forward and backward, than the same arithmetic as a matmul. A stride-1
transposed conv runs as the equivalent conv (TensorFlow's forward conv kernel is faster
than the transposed one). On the 32×32 training step the two are worth 1.10× and 1.14×;
sampling became 1.46× faster (benchmarks/README.md, "Where the time goes").
"""
import tensorflow as tf
from keras import ops

from genesis_tf.layers import conv_ops, tracking
from genesis_tf.layers.initializers import TorchConv2D, TorchConv2DTranspose
from genesis_tf.layers.normalization import BatchNorm


def batch_norm(name=None):
    """Batch norm with PyTorch's constants (ε 1e-5, running-average weight 0.1), identical
    across replicas under tf.distribute (unsynchronised copies drift apart)."""
    return BatchNorm(momentum=0.9, epsilon=1e-5, name=name)


class GatedConv2D(tracking.Layer):
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
        if transpose and output_padding > padding:
            raise ValueError("output_padding larger than padding is not supported")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.output_padding = output_padding
        self.transpose = transpose
        self.normalize = normalize
        # PyTorch's default initialisation (genesis_tf/layers/initializers.py).
        layer = TorchConv2DTranspose if transpose else TorchConv2D
        self.conv = layer(2 * filters, kernel_size, strides=strides, padding="valid",
                          name="conv")
        self.h_norm = batch_norm("h_norm") if normalize else None
        self.g_norm = batch_norm("g_norm") if normalize else None

    def build(self, input_shape):
        self.conv.build(input_shape)
        out_shape = self.compute_output_shape(input_shape)
        norm_shape = tuple(out_shape[:-1]) + (self.filters,)
        for norm in (self.h_norm, self.g_norm):
            if norm is not None:
                norm.build(norm_shape)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, self._out_size(h), self._out_size(w), self.filters)

    def _out_size(self, size):
        if size is None:
            return None
        k, s, p = self.kernel_size, self.strides, self.padding
        if self.transpose:
            return (size - 1) * s + k - 2 * p + self.output_padding
        return (size + 2 * p - k) // s + 1

    def _explicit_padding(self):
        """PyTorch's padding as the op's explicit padding, or "VALID" when there is none."""
        before = self.padding
        after = self.padding - (self.output_padding if self.transpose else 0)
        if before == 0 and after == 0:
            return "VALID"
        return [[0, 0], [before, after], [before, after], [0, 0]]

    def _full_window(self, x):
        """True when the kernel sees the whole input: the conv is a matrix product."""
        if self.padding or self.output_padding or x.shape[1] is None:
            return False
        size = 1 if self.transpose else self.kernel_size
        return x.shape[1] == size and x.shape[2] == size

    def _full_window_product(self, x, kernel):
        """The conv as a matmul; same weights, same result (to float rounding)."""
        k, c = self.kernel_size, 2 * self.filters
        if self.transpose:  # [N, 1, 1, D] -> [N, k, k, c]; kernel [k, k, c, D]
            flat = tf.reshape(x, [-1, x.shape[-1]])
            y = tf.matmul(flat, tf.reshape(kernel, [k * k * c, -1]), transpose_b=True)
            return tf.reshape(y, [-1, k, k, c])
        flat = tf.reshape(x, [-1, k * k * x.shape[-1]])  # [N, k, k, D] -> [N, 1, 1, c]
        y = tf.matmul(flat, tf.reshape(kernel, [-1, c]))
        return tf.reshape(y, [-1, 1, 1, c])

    def _transpose_as_conv(self):
        """Stride 1 with "same" padding (the decoder's 5x5, p = 2): the conv pads as much
        as the transposed conv crops. (Not the L×L stem: that conv would pad L − 1.)"""
        return (self.transpose and self.strides == 1 and self.output_padding == 0
                and 2 * self.padding == self.kernel_size - 1)

    def _stride1_transpose_as_conv(self, x, kernel):
        """A stride-1 transposed conv is a conv with the kernel flipped in space and its
        channel axes swapped, padded k − 1 − p: the same result through TensorFlow's
        forward conv kernel, faster than its transposed (input-gradient) kernel."""
        flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])  # [k, k, in, out]
        pad = self.kernel_size - 1 - self.padding
        padding = "VALID" if pad == 0 else [[0, 0], [pad, pad], [pad, pad], [0, 0]]
        return conv_ops.conv2d(x, flipped, 1, padding)

    def _convolve(self, x):
        kernel = ops.cast(self.conv.kernel, x.dtype)
        if self._full_window(x):
            y = self._full_window_product(x, kernel)
        elif self._transpose_as_conv():
            y = self._stride1_transpose_as_conv(x, kernel)
        elif self.transpose:
            shape = tf.shape(x)
            out_shape = tf.stack([
                shape[0],
                (shape[1] - 1) * self.strides + self.kernel_size - 2 * self.padding
                + self.output_padding,
                (shape[2] - 1) * self.strides + self.kernel_size - 2 * self.padding
                + self.output_padding,
                2 * self.filters,
            ])
            y = conv_ops.conv2d_transpose(x, kernel, out_shape, self.strides,
                                          self._explicit_padding())
            static = self.compute_output_shape(tuple(x.shape))
            y = tf.ensure_shape(y, static[:-1] + (2 * self.filters,))
        else:
            y = conv_ops.conv2d(x, kernel, self.strides, self._explicit_padding())
        return tf.nn.bias_add(y, ops.cast(self.conv.bias, x.dtype))

    def call(self, x, training=False):
        x = self._convolve(x)
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

"""PyTorch's default initialisation for the Keras layers of genesis_tf.

The reference implementation sets no initialiser, so PyTorch's defaults define the
starting point of training (measured against the reference with equal data):

* conv, transposed-conv and linear layers: kernel and bias ~ U(−b, b) with
  b = 1/√fan_in, where fan_in is that of the layer's *kernel*:
  in_channels·kh·kw (conv), out_channels·kh·kw (transposed conv, whose PyTorch weight is
  (in, out, kh, kw)), in_features (linear). Keras' ``compute_fans`` gives the same
  numbers for its kernel layouts (kh, kw, in, out), (kh, kw, out, in) and (in, out), so
  the kernel is ``VarianceScaling(1/3, "fan_in", "uniform")`` (b = √(3·(1/3)/fan_in)).
  A bias of shape (out,) does not know that fan_in, hence ``TorchBias(fan_in)`` and the
  layer subclasses below, which pass it at build time.
* LSTM: every weight (input and recurrent) ~ U(±1/√units), and two biases, b_ih and b_hh,
  each ~ U(±1/√units). A Keras LSTM has one bias, which plays the role of b_ih + b_hh:
  ``TorchLSTMBias`` draws the sum of two such uniforms (std = b·√(2/3)). Keras' own LSTM
  defaults (Glorot, orthogonal recurrent kernel, unit forget bias) are replaced; the
  forget-gate bias must then be switched off with ``unit_forget_bias=False``.
* batch norm: γ = 1, β = 0 — Keras' defaults already.

Every initialiser is a fresh object with its own seed (an unseeded Keras initialiser
draws a fixed seed at construction, so one instance shared by two layers gives them
identical weights): call the factories once per weight. All of them serialise through
``get_config`` and are registered under the "genesis_tf" package.
"""
import math

import keras
import tensorflow as tf

from genesis_tf.layers import conv_ops

PACKAGE = "genesis_tf"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchBias(keras.initializers.RandomUniform):
    """U(−1/√fan_in, 1/√fan_in): PyTorch's default bias of a conv or linear layer.

    ``fan_in`` is the fan-in of the layer's kernel. It may be left ``None`` when the
    initialiser is created before the layer knows its input; ``with_fan_in`` then gives
    the complete initialiser (same seed) — the Torch* layers below do this in ``build``.
    """

    def __init__(self, fan_in=None, seed=None):
        if fan_in is not None and fan_in < 1:
            raise ValueError(f"fan_in must be a positive integer, got {fan_in}")
        self.fan_in = None if fan_in is None else int(fan_in)
        bound = None if fan_in is None else 1.0 / math.sqrt(fan_in)
        super().__init__(
            minval=None if bound is None else -bound, maxval=bound, seed=seed)

    def with_fan_in(self, fan_in):
        """This initialiser with its fan-in set (the seed is kept)."""
        return TorchBias(fan_in, seed=self.seed)

    def __call__(self, shape, dtype=None):
        if self.fan_in is None:
            raise ValueError(
                "TorchBias needs the fan-in of the layer's kernel: create it with "
                "torch_bias(fan_in) or use a Torch* layer, which sets it in build()")
        return super().__call__(shape, dtype=dtype)

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": super().get_config()["seed"]}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchLSTMBias(keras.initializers.RandomUniform):
    """The sum of two independent U(±1/√units) draws: PyTorch's b_ih + b_hh.

    Mean 0, standard deviation √(2/3)/√units, support [−2/√units, 2/√units].
    """

    def __init__(self, units, seed=None):
        if units < 1:
            raise ValueError(f"units must be a positive integer, got {units}")
        self.units = int(units)
        bound = 1.0 / math.sqrt(units)
        super().__init__(minval=-bound, maxval=bound, seed=seed)

    def __call__(self, shape, dtype=None):
        # One draw of shape (2, *shape): the two biases are independent.
        draws = super().__call__((2,) + tuple(shape), dtype=dtype)
        return draws[0] + draws[1]

    def get_config(self):
        return {"units": self.units, "seed": super().get_config()["seed"]}


def torch_kernel(seed=None):
    """Conv / transposed-conv / dense kernel: U(±1/√fan_in), fan_in from the kernel shape."""
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)


def torch_bias(fan_in=None, seed=None):
    """Conv / transposed-conv / dense bias: U(±1/√fan_in) with the kernel's fan_in."""
    return TorchBias(fan_in, seed=seed)


def torch_lstm_kernel(units, seed=None):
    """LSTM input or recurrent kernel: U(±1/√units) whatever its shape."""
    bound = 1.0 / math.sqrt(units)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


def torch_lstm_bias(units, seed=None):
    """The one Keras LSTM bias as PyTorch's b_ih + b_hh."""
    return TorchLSTMBias(units, seed=seed)


def torch_lstm_arguments(units):
    """Keyword arguments that give ``keras.layers.LSTM`` / ``LSTMCell`` PyTorch's start."""
    return {
        "kernel_initializer": torch_lstm_kernel(units),
        "recurrent_initializer": torch_lstm_kernel(units),
        "bias_initializer": torch_lstm_bias(units),
        "unit_forget_bias": False,
    }


class _TorchInitMixin:
    """PyTorch's default kernel and bias initialisation for a Keras conv / dense layer.

    Defaults ``kernel_initializer`` to ``torch_kernel()`` and ``bias_initializer`` to a
    ``TorchBias`` whose fan-in is filled in by ``build`` from the input shape. Explicit
    initialisers are respected. Weight names and shapes are those of the Keras base class.
    """

    def __init__(self, *args, kernel_initializer=None, bias_initializer=None, **kwargs):
        super().__init__(
            *args,
            kernel_initializer=torch_kernel() if kernel_initializer is None
            else kernel_initializer,
            bias_initializer=torch_bias() if bias_initializer is None else bias_initializer,
            **kwargs,
        )

    def build(self, input_shape):
        if isinstance(self.bias_initializer, TorchBias) and self.bias_initializer.fan_in is None:
            self.bias_initializer = self.bias_initializer.with_fan_in(
                self.torch_fan_in(input_shape))
        super().build(input_shape)

    def torch_fan_in(self, input_shape):
        raise NotImplementedError


def _input_channels(layer, input_shape):
    axis = -1 if layer.data_format == "channels_last" else 1
    channels = input_shape[axis]
    if channels is None:
        raise ValueError(f"{layer.name}: the channel dimension of {input_shape} must be known")
    return int(channels)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchConv2D(_TorchInitMixin, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` initialised like ``torch.nn.Conv2d``."""

    def convolution_op(self, inputs, kernel):
        # In bfloat16, conv_ops picks the gradient kernels (emulated bfloat16 ones on CPUs
        # without native bfloat16 arithmetic: float32 there).
        if (inputs.dtype == tf.bfloat16 and self.data_format == "channels_last"
                and tuple(self.dilation_rate) == (1, 1) and self.groups == 1):
            return conv_ops.conv2d(inputs, kernel, list(self.strides), self.padding.upper())
        return super().convolution_op(inputs, kernel)

    def torch_fan_in(self, input_shape):
        return _input_channels(self, input_shape) // self.groups * math.prod(self.kernel_size)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchConv2DTranspose(_TorchInitMixin, keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` initialised like ``torch.nn.ConvTranspose2d``
    (fan_in = out_channels·kh·kw, the kernel's second-to-last axis in both layouts)."""

    def torch_fan_in(self, input_shape):
        return self.filters * math.prod(self.kernel_size)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchDense(_TorchInitMixin, keras.layers.Dense):
    """``keras.layers.Dense`` initialised like ``torch.nn.Linear``."""

    def torch_fan_in(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self.name}: the last dimension of {input_shape} must be known")
        return int(features)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` initialised like ``torch.nn.LSTM`` (unit_forget_bias off)."""

    def __init__(self, units, **kwargs):
        for key, value in torch_lstm_arguments(units).items():
            kwargs.setdefault(key, value)
        super().__init__(units, **kwargs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TorchLSTMCell(keras.layers.LSTMCell):
    """``keras.layers.LSTMCell`` initialised like ``torch.nn.LSTMCell``."""

    def __init__(self, units, **kwargs):
        for key, value in torch_lstm_arguments(units).items():
            kwargs.setdefault(key, value)
        super().__init__(units, **kwargs)

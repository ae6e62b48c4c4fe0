"""Initial weights follow PyTorch's defaults (the reference sets no initialiser).

Expected, with the fan-in of the layer's kernel:
conv kernel (kh, kw, in, out): fan_in = kh·kw·in; transposed conv kernel (kh, kw, out, in):
fan_in = kh·kw·out (torch's ConvTranspose2d weight is (in, out, kh, kw)); dense (in, out):
fan_in = in. Kernel and bias ~ U(±1/√fan_in), std bound/√3. LSTM: every weight
U(±1/√units); the one Keras bias is b_ih + b_hh, a sum of two such uniforms, std
bound·√(2/3), support ±2·bound. Batch norm γ = 1, β = 0.
"""
import math

import keras
import numpy as np
import pytest

from genesis_tf.layers import GatedConv2D
from genesis_tf.layers.initializers import (
    TorchBias,
    TorchConv2D,
    TorchConv2DTranspose,
    TorchDense,
    TorchLSTM,
    TorchLSTMBias,
    TorchLSTMCell,
    torch_bias,
    torch_kernel,
    torch_lstm_bias,
    torch_lstm_kernel,
)

STD_TOLERANCE = 0.05  # relative; the std of n ≥ 4096 uniform draws is within ~0.7 %


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def assert_uniform(values, bound, name=""):
    """values ~ U(±bound): inside the bound, reaching close to it, std bound/√3."""
    values = np.asarray(values, np.float64)
    assert np.abs(values).max() <= bound * (1 + 1e-6), name
    assert np.abs(values).max() >= 0.95 * bound, name
    assert abs(values.mean()) < 0.05 * bound, name
    expected_std = bound / math.sqrt(3)
    assert abs(values.std() / expected_std - 1) < STD_TOLERANCE, (name, values.std(),
                                                                   expected_std)


def assert_lstm_bias(values, units, name=""):
    """values ~ U(±b) + U(±b), b = 1/√units: support ±2b, std b·√(2/3)."""
    bound = 1 / math.sqrt(units)
    values = np.asarray(values, np.float64)
    assert np.abs(values).max() <= 2 * bound * (1 + 1e-6), name
    assert np.abs(values).max() > 1.2 * bound, name  # a single uniform never exceeds b
    expected_std = bound * math.sqrt(2 / 3)
    assert abs(values.std() / expected_std - 1) < STD_TOLERANCE, (name, values.std(),
                                                                   expected_std)


def test_conv2d_kernel_and_bias():
    layer = TorchConv2D(4096, 3, name="conv")
    layer.build((None, 8, 8, 8))
    bound = 1 / math.sqrt(3 * 3 * 8)
    assert_uniform(layer.kernel.numpy(), bound, "kernel")
    assert_uniform(layer.bias.numpy(), bound, "bias")


def test_conv2d_transpose_uses_output_channels_as_fan_in():
    in_channels, out_channels = 8, 4096
    layer = TorchConv2DTranspose(out_channels, 3, name="deconv")
    layer.build((None, 4, 4, in_channels))
    assert tuple(layer.kernel.shape) == (3, 3, out_channels, in_channels)
    bound = 1 / math.sqrt(out_channels * 3 * 3)  # torch: weight.size(1) · kh · kw
    assert_uniform(layer.kernel.numpy(), bound, "kernel")
    assert_uniform(layer.bias.numpy(), bound, "bias")
    # Keras' VarianceScaling fan_in of a (kh, kw, out, in) kernel is the same number.
    keras_limit = math.sqrt(3 * (1 / 3) / (3 * 3 * out_channels))
    assert keras_limit == pytest.approx(bound)


def test_dense_kernel_and_bias():
    layer = TorchDense(4096, name="dense")
    layer.build((None, 64))
    assert_uniform(layer.kernel.numpy(), 1 / 8, "kernel")
    assert_uniform(layer.bias.numpy(), 1 / 8, "bias")


@pytest.mark.parametrize("transpose", [False, True])
def test_gated_conv_uses_torch_initialisation(transpose):
    in_channels, filters = 8, 2048  # the conv has 2·filters outputs
    layer = GatedConv2D(filters, 3, padding=1, transpose=transpose, name="gated")
    layer.build((None, 6, 6, in_channels))
    fan_in = 3 * 3 * (2 * filters if transpose else in_channels)
    bound = 1 / math.sqrt(fan_in)
    assert_uniform(layer.conv.kernel.numpy(), bound, "kernel")
    assert_uniform(layer.conv.bias.numpy(), bound, "bias")
    for norm in (layer.h_norm, layer.g_norm):
        np.testing.assert_array_equal(norm.gamma.numpy(), 1.0)
        np.testing.assert_array_equal(norm.beta.numpy(), 0.0)


@pytest.mark.parametrize("kind", ["cell", "layer"])
def test_lstm_weights_and_summed_bias(kind):
    units, inputs = 1024, 64
    if kind == "cell":
        cell = TorchLSTMCell(units, name="cell")
        cell.build((None, inputs))
    else:
        layer = TorchLSTM(units, name="lstm")
        layer.build((None, 3, inputs))
        cell = layer.cell
    bound = 1 / math.sqrt(units)
    assert not cell.unit_forget_bias
    assert_uniform(cell.kernel.numpy(), bound, "kernel")
    assert_uniform(cell.recurrent_kernel.numpy(), bound, "recurrent_kernel")
    bias = cell.bias.numpy()
    assert_lstm_bias(bias, units, "bias")
    # No gate is special: the forget gate's bias is like the others (no unit forget bias).
    forget = bias[units:2 * units]
    assert abs(forget.mean()) < 0.1 * bound


def test_weights_of_different_layers_and_roles_are_independent():
    """An unseeded Keras initialiser fixes its seed at construction: a shared instance
    would give every layer the same weights, and equal seeds correlated ones."""
    a, b = TorchDense(64, name="a"), TorchDense(64, name="b")
    a.build((None, 64))
    b.build((None, 64))
    assert not np.allclose(a.kernel.numpy(), b.kernel.numpy())
    assert not np.allclose(a.bias.numpy(), b.bias.numpy())
    cell = TorchLSTMCell(64, name="cell")
    cell.build((None, 64))
    assert not np.allclose(cell.kernel.numpy(), cell.recurrent_kernel.numpy())
    assert not np.allclose(a.kernel.numpy()[:, :8], a.bias.numpy()[:8])


def test_initializers_serialise_and_are_reproducible():
    for init in (torch_kernel(seed=3), torch_bias(100, seed=3), torch_lstm_kernel(64, seed=3),
                 torch_lstm_bias(64, seed=3)):
        config = keras.initializers.serialize(init)
        clone = keras.initializers.deserialize(config)
        assert type(clone) is type(init)
        assert clone.get_config() == init.get_config()
        np.testing.assert_array_equal(clone((32, 16)).numpy(), init((32, 16)).numpy())
    assert TorchBias(100).get_config()["fan_in"] == 100
    assert TorchLSTMBias(64).get_config()["units"] == 64
    with pytest.raises(ValueError, match="fan-in"):
        TorchBias()((3,))


def test_layer_config_round_trip_keeps_the_initialisation():
    layer = TorchConv2D(16, 3, name="conv")
    layer.build((None, 8, 8, 8))
    clone = TorchConv2D.from_config(layer.get_config())
    assert clone.bias_initializer.fan_in == 72
    clone.build((None, 8, 8, 8))
    # The bias initialiser was completed (fan-in and seed) at build: same values. The
    # kernel's was unseeded, so the clone draws new values from the same distribution.
    np.testing.assert_array_equal(clone.bias.numpy(), layer.bias.numpy())
    assert np.abs(clone.kernel.numpy()).max() <= 1 / math.sqrt(72)
    # An explicit initialiser is respected.
    zero = TorchDense(4, bias_initializer="zeros", name="d")
    zero.build((None, 3))
    np.testing.assert_array_equal(zero.bias.numpy(), 0.0)


# --- the real model: every weight follows its layer's PyTorch bound -------------------

def _expected(layer, role, shape):
    """(distribution, bound) for a variable of a Keras layer, or None if not a weight."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return {"gamma": ("one", None), "beta": ("zero", None)}.get(role)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kernel_shape = tuple(layer.kernel.shape)  # (kh, kw, out, in)
        fan_in = kernel_shape[0] * kernel_shape[1] * kernel_shape[2]
        return "uniform", 1 / math.sqrt(fan_in)
    if isinstance(layer, keras.layers.Conv2D):
        kernel_shape = tuple(layer.kernel.shape)  # (kh, kw, in, out)
        fan_in = kernel_shape[0] * kernel_shape[1] * kernel_shape[2]
        return "uniform", 1 / math.sqrt(fan_in)
    if isinstance(layer, keras.layers.Dense):
        return "uniform", 1 / math.sqrt(layer.kernel.shape[0])
    if isinstance(layer, keras.layers.LSTMCell):
        bound = 1 / math.sqrt(layer.units)
        return ("lstm_bias" if role == "bias" else "uniform"), bound
    raise AssertionError(f"no expectation for {type(layer).__name__}.{role} {shape}")


def test_every_genesis_weight_has_pytorchs_initial_distribution():
    from genesis_tf.models import Genesis

    model = Genesis(image_size=64, num_slots=7).build_for_images()
    checked = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.LSTM):
            continue  # its variables belong to its cell, checked there
        for variable in layer._trainable_variables:
            role = variable.path.rsplit("/", 1)[-1]
            kind, bound = _expected(layer, role, variable.shape)
            values = variable.numpy().astype(np.float64)
            name = variable.path
            checked.add(id(variable))
            if kind == "one":
                np.testing.assert_array_equal(values, 1.0, err_msg=name)
                continue
            if kind == "zero":
                np.testing.assert_array_equal(values, 0.0, err_msg=name)
                continue
            support = 2 * bound if kind == "lstm_bias" else bound
            assert np.abs(values).max() <= support * (1 + 1e-6), name
            assert np.any(values != 0), name  # not Keras' zero bias
            n = values.size
            if n >= 30:
                # The relative sampling error of the std is ≈ 0.45/√n (uniform) or
                # 0.6/√n (sum of two uniforms): allow 5 % or 5 of those, the larger.
                std = bound * (math.sqrt(2 / 3) if kind == "lstm_bias" else 1 / math.sqrt(3))
                tolerance = max(STD_TOLERANCE, 5 * 0.6 / math.sqrt(n))
                assert abs(values.std() / std - 1) < tolerance, (name, values.std(), std)
                if kind == "uniform":  # P(max |w| < (1 − 10/n)·bound) ≈ e^-10
                    assert np.abs(values).max() >= (1 - 10 / n) * bound, name
    trainable = {id(v) for v in model.trainable_variables}
    assert checked == trainable, "some trainable variables were not checked"
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 12_619_012

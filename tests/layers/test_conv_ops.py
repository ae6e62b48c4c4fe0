"""genesis_tf.layers.conv_ops: PyTorch's explicit padding without TensorFlow's EXPLICIT
padding (whose gradients run on slow generic kernels), and bfloat16 gradients that take
the fast path on either kind of CPU."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.layers import conv_ops

# (input size, kernel, stride, PyTorch padding, output_padding)
CONVS = [(8, 5, 1, 2, 0),    # "SAME"
         (8, 5, 2, 2, 0),    # the encoders' stride 2: a pad op
         (7, 5, 2, 2, 0),    # odd input
         (9, 3, 3, 1, 0),
         (8, 4, 1, 1, 0),    # even kernel: a pad op
         (6, 3, 1, 0, 0)]    # no padding: "VALID"
TRANSPOSED = [(8, 5, 2, 2, 1),  # the decoders' upsampling
              (8, 4, 2, 1, 0),
              (5, 3, 1, 1, 0),
              (4, 3, 3, 0, 0)]


def _explicit(pad, output_pad=0):
    return [[0, 0], [pad, pad - output_pad], [pad, pad - output_pad], [0, 0]]


def _run(conv, x, kernel, weights):
    """Output and the gradients of a weighted sum of sin(output) w.r.t. input and kernel."""
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = conv(x, kernel)
        loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)) * weights)
    return [tf.cast(t, tf.float32).numpy() for t in [y, *tape.gradient(loss, [x, kernel])]]


def _gradient_graph(fn, *specs):
    """The traced graph of fn and its gradients w.r.t. all its inputs."""
    def forward_backward(*args):
        return tf.gradients(tf.reduce_sum(tf.cast(fn(*args), tf.float32)), list(args))
    return tf.function(forward_backward).get_concrete_function(*specs).graph


def _case(size, k, stride, pad, output_pad, transpose, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(2, size, size, 3)), tf.float32)
    kernel = tf.constant(rng.normal(size=(k, k, 4, 3) if transpose else (k, k, 3, 4)),
                         tf.float32)
    out = ((size - 1) * stride + k - 2 * pad + output_pad if transpose
           else (size + 2 * pad - k) // stride + 1)
    padding = _explicit(pad, output_pad)
    if transpose:
        def ours(x, kernel):
            return conv_ops.conv2d_transpose(x, kernel, [2, out, out, 4], stride, padding)

        def tensorflows(x, kernel):
            return tf.nn.conv2d_transpose(x, kernel, [2, out, out, 4], stride, padding)
    else:
        def ours(x, kernel):
            return conv_ops.conv2d(x, kernel, stride, padding)

        def tensorflows(x, kernel):
            return tf.nn.conv2d(x, kernel, stride, padding)
    weights = tf.constant(rng.normal(size=(2, out, out, 4)), tf.float32)
    return x, kernel, weights, ours, tensorflows


@pytest.mark.parametrize("case", [(*c, False) for c in CONVS] + [(*c, True) for c in TRANSPOSED],
                         ids=lambda c: ("T" if c[-1] else "C") + "-".join(map(str, c[:-1])))
def test_explicit_padding_gives_tensorflows_values_and_gradients_without_explicit_ops(case):
    x, kernel, weights, ours, tensorflows = _case(*case)
    for mine, theirs in zip(_run(ours, x, kernel, weights), _run(tensorflows, x, kernel, weights),
                            strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)
    graph = _gradient_graph(ours, tf.TensorSpec(x.shape), tf.TensorSpec(kernel.shape))
    ops = graph.get_operations()
    paddings = {op.get_attr("padding").decode() for op in ops if op.type.startswith("Conv2D")}
    assert paddings and paddings <= {"SAME", "VALID"}, paddings
    # A strided-slice crop's gradient is a slow generic kernel; tf.slice's is a Pad.
    assert "StridedSliceGrad" not in {op.type for op in ops}


def test_same_padding_is_used_exactly_where_it_places_the_windows_alike():
    same = conv_ops._same_places_windows_like
    assert same(8, 5, 1, 2, 2) and same(7, 3, 1, 1, 1) and same(8, 3, 2, 0, 1)
    assert not same(8, 5, 2, 2, 2)  # "SAME" would pad 1 in front, PyTorch pads 2
    assert not same(8, 4, 1, 1, 1)  # one output fewer than "SAME"
    assert not same(None, 5, 1, 2, 2)  # unknown size: a pad op, always correct


@pytest.mark.parametrize("native", [True, False], ids=["native", "emulated"])
@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "transposed"])
def test_bfloat16_gradients_take_the_fast_kernels_of_either_cpu(monkeypatch, native, transpose):
    """Where bfloat16 gradient kernels are native they run in bfloat16; where emulated, in
    float32. Either way values and gradients agree with float32 to bfloat16 precision."""
    monkeypatch.setattr(conv_ops, "bfloat16_gradients_native", lambda: native)
    case = (8, 5, 2, 2, 1) if transpose else (8, 5, 1, 2, 0)
    x, kernel, weights, ours, _ = _case(*case, transpose=transpose, seed=3)
    bf16 = _run(ours, tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16), weights)
    for got, expected in zip(bf16, _run(ours, x, kernel, weights), strict=True):
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got / scale, expected / scale, atol=0.03)

    graph = _gradient_graph(ours, tf.TensorSpec(x.shape, tf.bfloat16),
                            tf.TensorSpec(kernel.shape, tf.bfloat16))
    dtypes = {op.get_attr("T") for op in graph.get_operations()
              if op.type.startswith("Conv2DBackprop")}
    assert dtypes == {tf.bfloat16 if native else tf.float32}, dtypes


def test_the_bfloat16_measurement_runs_even_when_first_asked_inside_a_trace():
    conv_ops.bfloat16_gradients_native.cache_clear()
    x = tf.zeros([1, 8, 8, 3], tf.bfloat16)
    kernel = tf.zeros([3, 3, 3, 4], tf.bfloat16)
    # First asked while tracing: the measurement must run eagerly, not add ops to the graph.
    graph = tf.function(lambda x, k: conv_ops.conv2d(x, k, 1, "SAME")).get_concrete_function(
        x, kernel).graph
    assert "Conv2DBackpropFilter" not in {op.type for op in graph.get_operations()}
    assert conv_ops.bfloat16_gradients_native.cache_info().currsize == 1
    assert isinstance(conv_ops.bfloat16_gradients_native(), bool)

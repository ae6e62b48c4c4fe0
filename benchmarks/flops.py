"""Floating-point operations of a traced TensorFlow graph, counted analytically.

Counts the multiply-adds of the ops that do the heavy arithmetic — convolutions, their two
gradients, matrix products — from the static shapes in the graph, 2 FLOPs per
multiply-add. Element-wise ops (activations, batch norm, the losses) are left out: they
are memory-bound and cost a few percent of the FLOPs. TensorFlow's profiler
(``profiled_flops``) counts every op with a registered statistic and is reported next to
it for comparison.

    from flops import count_flops   # from a script in benchmarks/
    counts = count_flops(tf.function(step).get_concrete_function())   # {op type: FLOPs}
"""
import collections

import numpy as np


def _dims(tensor):
    shape = tensor.shape
    if shape.rank is None or any(d is None for d in shape):
        raise ValueError(f"{tensor.name} has no static shape ({shape}); trace with fixed "
                         "input shapes to count FLOPs")
    return [int(d) for d in shape]


def _filter_dims(op, index):
    """Filter shape [kh, kw, in, out] of a conv op: from the filter input or its sizes."""
    if op.type == "Conv2DBackpropFilter":
        from tensorflow.python.framework import tensor_util

        sizes = tensor_util.constant_value(op.inputs[1])
        if sizes is None:
            return _dims(op.outputs[0])
        return [int(s) for s in sizes]
    return _dims(op.inputs[index])


def conv_flops(op):
    """FLOPs of one Conv2D, Conv2DBackpropInput or Conv2DBackpropFilter op."""
    # All three conv ops do one multiply-add per (output-gradient element of the forward
    # conv) × (kernel window) × (input channel): 2 · |forward output| · kh · kw · C_in.
    if op.type == "Conv2D":
        forward_out = _dims(op.outputs[0])
        kh, kw, cin, _ = _dims(op.inputs[1])
    elif op.type == "Conv2DBackpropInput":  # also the forward op of a transposed conv
        forward_out = _dims(op.inputs[2])
        kh, kw, cin, _ = _dims(op.inputs[1])
    else:  # Conv2DBackpropFilter(input, filter_sizes, out_backprop)
        forward_out = _dims(op.inputs[2])
        kh, kw, cin, _ = _filter_dims(op, 1)
    return 2 * int(np.prod(forward_out)) * kh * kw * cin


def _matmul_flops(op):
    a, b = _dims(op.inputs[0]), _dims(op.inputs[1])
    if op.type == "MatMul":
        m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
        n = b[0] if op.get_attr("transpose_b") else b[1]
        return 2 * m * k * n
    # BatchMatMulV2/V3: broadcast batch dims, adj_x / adj_y transpose the last two.
    batch = int(np.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))) if \
        len(a) > 2 or len(b) > 2 else 1
    m, k = (a[-1], a[-2]) if op.get_attr("adj_x") else (a[-2], a[-1])
    n = b[-2] if op.get_attr("adj_y") else b[-1]
    return 2 * batch * m * k * n


_RULES = {
    "Conv2D": conv_flops,
    "Conv2DBackpropInput": conv_flops,
    "Conv2DBackpropFilter": conv_flops,
    "MatMul": _matmul_flops,
    "BatchMatMulV2": _matmul_flops,
    "BatchMatMulV3": _matmul_flops,
}


def _graphs(graph, seen=None):
    """The graph and the bodies of the functions it calls (tf.function nests them)."""
    seen = set() if seen is None else seen
    if id(graph) in seen:
        return
    seen.add(id(graph))
    yield graph
    for function in getattr(graph, "_functions", {}).values():
        inner = getattr(function, "graph", None)
        if inner is not None:
            yield from _graphs(inner, seen)


def _live_ops(graph):
    """Ops that the function's outputs or side effects depend on. Gradient functions build
    ops that are never run (e.g. the gradient w.r.t. a constant input image); TensorFlow
    prunes them before running, so they are not counted."""
    roots = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    live, stack = set(), list(roots)
    while stack:
        op = stack.pop()
        if op in live:
            continue
        live.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return live


def run_ops(concrete_function):
    """The ops one call of a concrete tf.function runs: the live ops of its graph and all
    ops of the function bodies it nests (those inside a while loop once, not per
    iteration)."""
    top = concrete_function.graph
    for graph in _graphs(top):
        yield from (_live_ops(graph) if graph is top else graph.get_operations())


def count_flops(concrete_function):
    """{op type: FLOPs} for one call of a concrete tf.function (forward + whatever it traces).

    Ops inside control flow (while loops) are counted once, not per iteration; ops of
    nested function bodies are all counted.
    """
    counts = collections.Counter()
    for op in run_ops(concrete_function):
        rule = _RULES.get(op.type)
        if rule is not None:
            counts[op.type] += rule(op)
    return dict(counts)


def profiled_flops(concrete_function):
    """FLOPs of one call according to TensorFlow's profiler (all ops with statistics)."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(concrete_function.graph, options=options).total_float_ops

"""One conv, forward and backward, with PyTorch's padding given to TensorFlow as EXPLICIT
padding against the same conv through genesis_tf.layers.conv_ops ("SAME", or a pad op and
"VALID"; transposed: "VALID" and a crop), in float32 and bfloat16.

    python benchmarks/conv_padding.py            # GENESIS-sized convs, batch 64
    python benchmarks/conv_padding.py --quick    # tiny shapes, seconds

TensorFlow 2.21 runs the gradients of an EXPLICIT-padding conv (and the forward op of a
padded transposed conv) on Eigen's generic kernels instead of oneDNN's; in bfloat16 those
are emulated. Prints ms per forward + backward (mean of --repeats after a warm-up call)
and writes JSON (--json); also prints whether conv_ops found this CPU's bfloat16 gradient
kernels native.
"""
import argparse
import json
import os
import time

import tensorflow as tf

from genesis_tf.layers import conv_ops

# (label, input size, in channels, out channels, kernel, stride, PyTorch padding,
#  output padding, transposed)
CASES = [
    ("5x5, 32->64, 16x16, p=2", 16, 32, 64, 5, 1, 2, 0, False),
    ("5x5, 32->32, 32x32, stride 2, p=2", 32, 32, 32, 5, 2, 2, 0, False),
    ("transposed 5x5, 32->32, 16->32, stride 2, p=2, op 1", 16, 32, 32, 5, 2, 2, 1, True),
]


def forward_backward(implementation, batch, size, c_in, c_out, k, stride, pad, out_pad,
                     transpose, dtype):
    """A tf.function of no arguments: the conv and its gradients w.r.t. input and kernel."""
    x = tf.cast(tf.random.stateless_normal([batch, size, size, c_in], seed=[0, 1]), dtype)
    shape = [k, k, c_out, c_in] if transpose else [k, k, c_in, c_out]
    kernel = tf.cast(tf.random.stateless_normal(shape, seed=[0, 2]) * 0.1, dtype)
    padding = [[0, 0], [pad, pad - out_pad], [pad, pad - out_pad], [0, 0]]
    out = (size - 1) * stride + k - 2 * pad + out_pad
    module = conv_ops if implementation == "conv_ops" else tf.nn

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            if transpose:
                y = module.conv2d_transpose(x, kernel, [batch, out, out, c_out], stride, padding)
            else:
                y = module.conv2d(x, kernel, stride, padding)
        return tape.gradient(y, [x, kernel])

    return step


def mean_ms(fn, repeats):
    fn()  # trace and warm up
    start = time.perf_counter()
    for _ in range(repeats):
        [t.numpy() for t in fn()]
    return (time.perf_counter() - start) / repeats * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--quick", action="store_true", help="batch 2, 1 repeat")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.quick:
        args.batch_size, args.repeats = 2, 1
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    rows = []
    for label, *shape in CASES:
        row = {"conv": label}
        for dtype in (tf.float32, tf.bfloat16):
            for implementation in ("explicit", "conv_ops"):
                fn = forward_backward(implementation, args.batch_size, *shape, dtype)
                row[f"{implementation}_{dtype.name}_ms"] = mean_ms(fn, args.repeats)
        rows.append(row)
    native = conv_ops.bfloat16_gradients_native()
    print(f"\nforward + backward, batch {args.batch_size}, {args.threads} threads, mean of "
          f"{args.repeats}; load {os.getloadavg()[0]:.2f}; bfloat16 gradient kernels "
          f"{'native' if native else 'emulated'} here")
    print(f"{'conv':55s} {'EXPLICIT f32':>12s} {'conv_ops f32':>12s} {'EXPLICIT bf16':>13s} "
          f"{'conv_ops bf16':>13s}  ms")
    for r in rows:
        print(f"{r['conv']:55s} {r['explicit_float32_ms']:12.1f} {r['conv_ops_float32_ms']:12.1f} "
              f"{r['explicit_bfloat16_ms']:13.1f} {r['conv_ops_bfloat16_ms']:13.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "bfloat16_gradients_native": native,
                       "load_avg": os.getloadavg()[0], "config": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()

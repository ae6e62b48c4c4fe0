"""Seconds per GENESIS training step (forward, loss terms, GECO, gradients, Adam).

    python benchmarks/train_step.py                       # gqn.gin's model: K=7, 64x64, batch 32
    python benchmarks/train_step.py --model=genesis --num_slots=5 --modes=function,xla
    python benchmarks/train_step.py --quick               # a tiny configuration, seconds

Prints a table and writes JSON (--json): per mode the median and min seconds per step over
--steps steps after --warmup steps, images/s, the step's floating-point operations counted
by TensorFlow's profiler on the traced graph (ops with registered FLOP statistics: convs,
transposed convs, matmuls, element-wise ops), the achieved GFLOP/s, peak RSS, and this
machine's measured float32 matmul and 5x5-conv rates for comparison.
"""
import argparse
import json
import os
import pathlib
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from genesis_tf.geco import GECO
from genesis_tf.models import Genesis, GenesisS


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def machine_rates(repeats=5):
    """Measured float32 GFLOP/s of a 2048² matmul and a 5x5 conv (32x32x64 -> 64, batch 64)."""
    a = tf.random.normal([2048, 2048])
    x = tf.random.normal([64, 32, 32, 64])
    k = tf.random.normal([5, 5, 64, 64])
    matmul = tf.function(lambda: tf.matmul(a, a))
    conv = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
    rates = {}
    for name, fn, flops in (("matmul", matmul, 2 * 2048**3),
                            ("conv5x5", conv, 2 * 64 * 32 * 32 * 25 * 64 * 64)):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn().numpy()
            times.append(time.perf_counter() - start)
        rates[name] = flops / min(times) / 1e9
    return rates


def make_step(model, geco, optimizer, images, mode):
    def step():
        with tf.GradientTape() as tape:
            out = model(images, training=True)
            terms = model.loss_terms(images, out)
            err = tf.reduce_mean(terms["err"])
            loss = geco.loss(err, tf.reduce_mean(terms["kl_m"] + terms["kl_l"]))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        geco.update(err)
        return loss

    if mode == "eager":
        return step
    return tf.function(step, jit_compile=(mode == "xla"))


def profiled_flops(fn):
    """FLOPs of one call of a tf.function, from TensorFlow's profiler."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    graph = fn.get_concrete_function().graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(graph, options=options).total_float_ops


def run(args):
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.policy != "float32":
        keras.mixed_precision.set_global_policy(args.policy)
    cls = GenesisS if args.model == "genesis_s" else Genesis
    rows, flops = [], None
    rates = machine_rates()
    for mode in args.modes.split(","):
        tf.keras.utils.set_random_seed(0)
        model = cls(image_size=args.image_size, num_slots=args.num_slots).build_for_images()
        optimizer = keras.optimizers.Adam(1e-4)
        optimizer.build(model.trainable_variables)
        geco = GECO.for_image(args.image_size, args.image_size)
        images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3])
        step = make_step(model, geco, optimizer, images, mode)
        if flops is None and mode != "eager":
            flops = profiled_flops(step)
        for _ in range(args.warmup):
            step().numpy()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step().numpy()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({
            "mode": mode, "median_s": median, "min_s": min(times),
            "images_per_s": args.batch_size / median,
            "gflops_per_s": (flops / median / 1e9) if flops else None,
            "peak_rss_gb": peak_rss_gb(),
        })
    return {"config": vars(args), "flops_per_step": flops, "machine_gflops": rates,
            "load_avg": os.getloadavg()[0], "tf": tf.__version__, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["genesis", "genesis_s"], default="genesis")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_slots", type=int, default=7)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="function")
    parser.add_argument("--policy", default="float32",
                        choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="32x32, K=3, batch 2, 2 steps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.num_slots, args.batch_size = 32, 3, 2
        args.steps, args.warmup = 2, 1
    result = run(args)
    flops = result["flops_per_step"]
    print(f"\n{args.model} K={args.num_slots} {args.image_size}x{args.image_size} "
          f"batch {args.batch_size} {args.policy}; {args.threads} threads; "
          f"load {result['load_avg']:.2f}; step = "
          f"{flops / 1e9 if flops else float('nan'):.1f} GFLOP (TF profiler); machine: "
          f"matmul {result['machine_gflops']['matmul']:.0f}, conv5x5 "
          f"{result['machine_gflops']['conv5x5']:.0f} GFLOP/s")
    print(f"{'mode':9s} {'median s':>9s} {'min s':>8s} {'img/s':>8s} {'GFLOP/s':>8s} "
          f"{'RSS GB':>7s}")
    for r in result["rows"]:
        gf = f"{r['gflops_per_s']:8.1f}" if r["gflops_per_s"] else f"{'-':>8s}"
        print(f"{r['mode']:9s} {r['median_s']:9.3f} {r['min_s']:8.3f} "
              f"{r['images_per_s']:8.2f} {gf} {r['peak_rss_gb']:7.2f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

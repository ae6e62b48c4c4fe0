"""Seconds per GENESIS training step: the training loop's own step, timed.

    python benchmarks/train_step.py                       # gqn.gin's model: K=7, 64x64, batch 32
    python benchmarks/train_step.py --model=genesis --num_slots=5 --modes=function,xla
    python benchmarks/train_step.py --optimizer=keras_adam
    python benchmarks/train_step.py --quick               # a tiny configuration, seconds

The step is genesis_tf.training.step.make_train_step, the one genesis_tf.training.loop runs
(forward in training mode, loss terms, GECO loss, gradients, optimizer, GECO update), built
as the loop builds it: the model under the --policy dtype policy, the optimizer from
make_optimizer (--optimizer: torch_adam, PyTorch's Adam rule as the loop's default, or
keras_adam; learning rate 1e-4, epsilon 1e-8) built for the model's variables, a
LossScaleOptimizer and loss scaling for mixed_float16, GECO for the image size; run through
the default strategy's ``run`` as the loop's inner loop does. Modes: ``eager`` (no
tf.function), ``function`` (tf.function) and ``xla`` (tf.function(jit_compile=True)). The
loop's input pipeline and metrics are not part of it: the images are one fixed random batch.

Prints a table and writes JSON (--json): per mode the median and min seconds per step over
--steps steps after --warmup steps, the first call's seconds (tracing + compiling), images/s,
the step's floating-point operations counted analytically from the traced graph's conv and
matmul shapes (flops.py; TensorFlow's profiler count is printed next to it), the achieved
GFLOP/s, peak RSS, and this machine's measured conv and matmul rates, so the gap to the
floor (FLOPs / measured 5x5 conv rate) is visible.
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
from flops import count_flops, profiled_flops

from genesis_tf.geco import GECO
from genesis_tf.models import Genesis, GenesisS, GenesisV2
from genesis_tf.models.base import ERR, kl_total
from genesis_tf.training import precision as precision_lib
from genesis_tf.training.optimizers import OPTIMIZERS, TORCH_ADAM, make_optimizer
from genesis_tf.training.step import make_train_step

MODEL_CLASSES = {"genesis": Genesis, "genesis_s": GenesisS, "genesis_v2": GenesisV2}
LEARNING_RATE = 1e-4  # the loop's defaults (make_optimizer.learning_rate, .epsilon)
ADAM_EPSILON = 1e-8


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def machine_rates(repeats=5):
    """Measured GFLOP/s of this machine on the step's kinds of arithmetic (best of repeats).

    matmul: 2048² float32; conv5x5: 32x32x64 -> 64, batch 64; conv3x3_c32: 64x64x32 -> 32,
    batch 64; tconv5x5_s2: stride-2 transposed 16x16x64 -> 32x32x64, batch 64;
    conv5x5_bf16: conv5x5 in bfloat16.
    """
    a = tf.random.normal([2048, 2048])
    x = tf.random.normal([64, 32, 32, 64])
    k = tf.random.normal([5, 5, 64, 64])
    x3 = tf.random.normal([64, 64, 64, 32])
    k3 = tf.random.normal([3, 3, 32, 32])
    xt = tf.random.normal([64, 16, 16, 64])
    xb, kb = tf.cast(x, tf.bfloat16), tf.cast(k, tf.bfloat16)
    conv_flops = 2 * 64 * 32 * 32 * 25 * 64 * 64
    rates = {}
    for name, fn, flops in (
        ("matmul", tf.function(lambda: tf.matmul(a, a)), 2 * 2048**3),
        ("conv5x5", tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME")), conv_flops),
        ("conv3x3_c32", tf.function(lambda: tf.nn.conv2d(x3, k3, 1, "SAME")),
         2 * 64 * 64 * 64 * 9 * 32 * 32),
        ("tconv5x5_s2", tf.function(
            lambda: tf.nn.conv2d_transpose(xt, k, [64, 32, 32, 64], 2, "SAME")),
         2 * 64 * 16 * 16 * 25 * 64 * 64),
        ("conv5x5_bf16", tf.function(lambda: tf.nn.conv2d(xb, kb, 1, "SAME")), conv_flops),
    ):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn().numpy()
            times.append(time.perf_counter() - start)
        rates[name] = flops / min(times) / 1e9
    return rates


def build(args):
    """Model, optimizer, GECO and the loop's replica step, built as training.loop builds them.

    Returns (model, optimizer, replica_step); replica_step(images) -> {term: batch mean}.
    """
    cls = MODEL_CLASSES[args.model]
    model = precision_lib.with_policy(
        args.policy, lambda: cls(image_size=args.image_size, num_slots=args.num_slots))
    model.build_for_images()
    optimizer = make_optimizer(args.optimizer, LEARNING_RATE, epsilon=ADAM_EPSILON)
    loss_scaling = args.policy == "mixed_float16"  # as the loop: float16 gradients underflow
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    geco = GECO.for_image(args.image_size, args.image_size)
    return model, optimizer, make_train_step(model, optimizer, geco, args.batch_size,
                                             loss_scaling=loss_scaling)


def make_step(replica_step, images, mode):
    """A step of no arguments on `images`: the replica step run by the default strategy,
    as the loop's inner loop runs it; eager, or in a tf.function (jit-compiled for xla)."""
    strategy = tf.distribute.get_strategy()

    def step():
        return strategy.run(replica_step, args=(images,))

    if mode == "eager":
        return step
    return tf.function(step, jit_compile=(mode == "xla"))


def run_step(step):
    """One step, waited for: its loss-term means as numbers."""
    return {name: float(value.numpy()) for name, value in step().items()}


def forward_flops(model, images):
    """Analytical FLOPs of the forward pass and loss terms alone (no gradients)."""
    def forward():
        out = model(images, training=True)
        terms = model.loss_terms(images, out)
        return {"err": terms[ERR], "kl": kl_total(terms)}

    return sum(count_flops(tf.function(forward).get_concrete_function()).values())


def run(args):
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    precision_lib.check_hardware(args.policy)  # warns where the kernels are emulated
    rows, flops = [], None
    rates = machine_rates()
    flops_info = {}
    for mode in args.modes.split(","):
        tf.keras.utils.set_random_seed(0)
        model, _, replica_step = build(args)
        images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3])
        step = make_step(replica_step, images, mode)
        if flops is None:
            graph_step = step if mode != "eager" else tf.function(step)
            concrete = graph_step.get_concrete_function()
            by_op = count_flops(concrete)
            flops = sum(by_op.values())
            flops_info = {"analytical_by_op": by_op,
                          "analytical_forward": forward_flops(model, images),
                          "profiler": profiled_flops(concrete)}
        start = time.perf_counter()
        run_step(step)
        first_call = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            run_step(step)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            run_step(step)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({
            "mode": mode, "median_s": median, "min_s": min(times), "first_call_s": first_call,
            "images_per_s": args.batch_size / median,
            "gflops_per_s": (flops / median / 1e9) if flops else None,
            "peak_rss_gb": peak_rss_gb(),
        })
    floor_rate = rates["conv5x5_bf16" if args.policy == "mixed_bfloat16" else "conv5x5"]
    return {"config": vars(args), "flops_per_step": flops, "flops": flops_info,
            "floor_s": flops / floor_rate / 1e9, "machine_gflops": rates,
            "load_avg": os.getloadavg()[0], "tf": tf.__version__, "rows": rows}


def add_step_arguments(parser):
    """The step's model, size, precision, optimizer and threads (shared with profile_step)."""
    parser.add_argument("--model", choices=sorted(MODEL_CLASSES), default="genesis")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_slots", type=int, default=7)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (>= 1)")
    parser.add_argument("--policy", default="float32",
                        choices=list(precision_lib.PRECISIONS))
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default=TORCH_ADAM,
                        help="the loop's make_optimizer name (default: PyTorch's Adam rule)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--modes", default="function")
    parser.add_argument("--quick", action="store_true", help="32x32, K=3, batch 2, 2 steps")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.num_slots, args.batch_size = 32, 3, 2
        args.steps, args.warmup = 2, 1
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first call traces the step)")
    result = run(args)
    flops, info = result["flops_per_step"], result["flops"]
    rates = result["machine_gflops"]
    print(f"\n{args.model} K={args.num_slots} {args.image_size}x{args.image_size} "
          f"batch {args.batch_size} {args.policy} {args.optimizer}; {args.threads} threads; "
          f"load {result['load_avg']:.2f}")
    print(f"step: {flops / 1e9:.1f} GFLOP analytical (convs + matmuls, forward "
          f"{info['analytical_forward'] / 1e9:.1f}); TF profiler {info['profiler'] / 1e9:.1f}; "
          f"floor {result['floor_s']:.2f} s at the 5x5 conv rate")
    print("machine GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    print(f"{'mode':9s} {'median s':>9s} {'min s':>8s} {'1st s':>7s} {'img/s':>8s} "
          f"{'GFLOP/s':>8s} {'RSS GB':>7s}")
    for r in result["rows"]:
        print(f"{r['mode']:9s} {r['median_s']:9.3f} {r['min_s']:8.3f} {r['first_call_s']:7.1f} "
              f"{r['images_per_s']:8.2f} {r['gflops_per_s']:8.1f} {r['peak_rss_gb']:7.2f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

"""How long the convolutions of a training step (or of sampling) take alone, at the step's
own shapes: the floor that TensorFlow's conv kernels set on this machine.

    python benchmarks/conv_floor.py --model=genesis_v2 --image_size=32 --num_slots=4 --batch_size=16
    python benchmarks/conv_floor.py --model=genesis_v2 --what=sample [--policy=mixed_bfloat16]
    python benchmarks/conv_floor.py --quick               # a tiny configuration, seconds

The step is train_step.py's (sampling: model.sample in a tf.function, as sample.py). Every
Conv2D, Conv2DBackpropInput (also a transposed conv's forward op) and Conv2DBackpropFilter
that the traced graph runs is rebuilt with the same shapes, dtype, strides and padding on
fixed random inputs, all in one tf.function and with nothing else, so TensorFlow schedules
them as freely as in the step. Prints the step's and the convs' median seconds (same
process, alternating), the convs' share of the step and their GFLOP/s; writes JSON
(--json). A speed goal below the convs' own time cannot be met with these kernels.
"""
import argparse
import json
import os
import pathlib
import statistics
import time

import numpy as np
import tensorflow as tf
import train_step
from flops import conv_flops, run_ops

CONV_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")
_ATTRS = ("strides", "padding", "explicit_paddings", "dilations", "data_format")


def conv_specs(concrete_function):
    """(op type, input shapes, dtype, attrs, FLOPs) of every conv op the function runs."""
    specs = []
    for op in run_ops(concrete_function):
        if op.type in CONV_OPS:
            shapes = [[int(d) for d in t.shape] for t in op.inputs]
            if op.type != "Conv2D":  # the sizes input: the shape it names, not its own
                sizes_at = 0 if op.type == "Conv2DBackpropInput" else 1
                shapes[sizes_at] = [int(d) for d in op.outputs[0].shape]
            attrs = {name: op.get_attr(name) for name in _ATTRS}
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
            specs.append((op.type, shapes, op.get_attr("T"), attrs, conv_flops(op)))
    return specs


def convs_alone(specs):
    """A tf.function running the ops of `specs` on fixed random inputs, nothing else."""
    rng = np.random.default_rng(0)

    def tensor(shape, dtype):
        return tf.constant(rng.standard_normal(shape).astype(np.float32), dtype=dtype)

    calls = []
    for op_type, shapes, dtype, attrs, _ in specs:
        if op_type == "Conv2D":
            inputs = {"input": tensor(shapes[0], dtype), "filter": tensor(shapes[1], dtype)}
        elif op_type == "Conv2DBackpropInput":
            inputs = {"input_sizes": tf.constant(shapes[0], tf.int32),
                      "filter": tensor(shapes[1], dtype), "out_backprop": tensor(shapes[2], dtype)}
        else:
            inputs = {"input": tensor(shapes[0], dtype),
                      "filter_sizes": tf.constant(shapes[1], tf.int32),
                      "out_backprop": tensor(shapes[2], dtype)}
        calls.append((getattr(tf.raw_ops, op_type), {**inputs, **attrs}))

    @tf.function
    def run():
        return [tf.reduce_sum(op(**kwargs)[..., :1]) for op, kwargs in calls]

    return run


def seconds(fn):
    """Seconds of one call of fn, its results waited for."""
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), fn())
    return time.perf_counter() - start


def traced_work(args):
    """(the step or sampling as a tf.function of no arguments, its concrete function)."""
    if args.what == "step":
        tf.keras.utils.set_random_seed(0)
        _, _, replica_step = train_step.build(args)
        images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3])
        fn = train_step.make_step(replica_step, images, "function")
    else:
        import keras

        if args.policy != "float32":
            keras.mixed_precision.set_global_policy(args.policy)
        model = train_step.MODEL_CLASSES[args.model](
            image_size=args.image_size, num_slots=args.num_slots).build_for_images()
        fn = tf.function(lambda: model.sample(batch_size=args.batch_size).recon)
    return fn, fn.get_concrete_function()


def run(args):
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    work, concrete = traced_work(args)
    specs = conv_specs(concrete)
    convs = convs_alone(specs)
    for fn in (work, convs, work, convs):  # trace and warm up both
        seconds(fn)
    work_times, conv_times = [], []
    for _ in range(args.repeats):  # alternating, so a change of the host's speed hits both
        work_times.append(seconds(work))
        conv_times.append(seconds(convs))
    flops = sum(spec[-1] for spec in specs)
    work_s, conv_s = statistics.median(work_times), statistics.median(conv_times)
    return {"config": vars(args), "conv_ops": len(specs), "conv_flops": flops,
            "work_median_s": work_s, "convs_median_s": conv_s,
            "convs_share": conv_s / work_s, "convs_gflops_per_s": flops / conv_s / 1e9,
            "work_times": work_times, "conv_times": conv_times,
            "load_avg": os.getloadavg()[0], "tf": tf.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_step.add_step_arguments(parser)
    parser.add_argument("--what", choices=["step", "sample"], default="step")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="32x32, K=3, batch 2, 2 repeats")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.num_slots, args.batch_size, args.repeats = 32, 3, 2, 2
    result = run(args)
    print(f"\n{args.what}: {args.model} K={args.num_slots} {args.image_size}x{args.image_size} "
          f"batch {args.batch_size} {args.policy}; {args.threads} threads; "
          f"load {result['load_avg']:.2f}")
    print(f"{args.what} {result['work_median_s']:.3f} s; its {result['conv_ops']} conv ops "
          f"alone {result['convs_median_s']:.3f} s ({result['convs_share']:.0%} of it; "
          f"{result['conv_flops'] / 1e9:.1f} GFLOP at {result['convs_gflops_per_s']:.0f} "
          "GFLOP/s)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()

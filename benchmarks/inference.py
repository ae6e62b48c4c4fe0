"""Shared timing for the inference benchmarks (sample.py, decompose.py)."""
import argparse
import json
import os
import pathlib
import statistics
import time

import keras
import tensorflow as tf

from genesis_tf.models import Genesis, GenesisS, GenesisV2

MODEL_CLASSES = {"genesis": Genesis, "genesis_s": GenesisS, "genesis_v2": GenesisV2}


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", choices=sorted(MODEL_CLASSES), default="genesis")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--num_slots", type=int, default=7)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--policy", default="float32",
                   choices=["float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--quick", action="store_true", help="32x32, K=3, batch 2, 2 repeats")
    p.add_argument("--json", default=None)
    return p


def run(args, what, make_fn):
    """Times make_fn(model) (a tf.function of no arguments) and prints a one-row table."""
    if args.quick:
        args.image_size, args.num_slots, args.batch_size, args.repeats = 32, 3, 2, 2
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.policy != "float32":
        keras.mixed_precision.set_global_policy(args.policy)
    cls = MODEL_CLASSES[args.model]
    model = cls(image_size=args.image_size, num_slots=args.num_slots).build_for_images()
    fn = make_fn(model)
    fn()  # trace and warm up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn())
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    import resource

    row = {"what": what, "median_s": median, "min_s": min(times),
           "images_per_s": args.batch_size / median,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
           "load_avg": os.getloadavg()[0], "config": vars(args)}
    print(f"\n{what}: {args.model} K={args.num_slots} {args.image_size}x{args.image_size} "
          f"batch {args.batch_size} {args.policy}; {args.threads} threads; "
          f"load {row['load_avg']:.2f}")
    print(f"{'median s':>9s} {'min s':>8s} {'img/s':>8s} {'RSS GB':>7s}")
    print(f"{median:9.3f} {min(times):8.3f} {row['images_per_s']:8.2f} "
          f"{row['peak_rss_gb']:7.2f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(row, indent=2, default=float))
    return row

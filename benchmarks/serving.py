"""Latency and throughput of an exported SavedModel's signatures, per batch size: what a
TF Serving batching configuration should be chosen from.

    python benchmarks/serving.py [--num_slots=7] [--image_size=64] [--batch_sizes=1,8,32]

Exports a freshly initialised GENESIS (speed does not depend on the weights) with
genesis_tf.export, reloads it with tf.saved_model.load as a server would, and times
`decompose` per batch size and `generate`; median of --repeats calls after one warm-up.
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from genesis_tf.export import export_model
from genesis_tf.models import Genesis


def cpu_model():
    """lscpu's model name, family and model: figures are comparable only on one CPU."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.machine()
    return (f"{fields.get('model name', platform.machine())} (family "
            f"{fields.get('cpu family', '?')}, model {fields.get('model', '?')})")


def _median_seconds(function, repeats):
    function()  # warm-up: the first call of a loaded signature is slow
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_slots", type=int, default=7)
    parser.add_argument("--batch_sizes", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    except RuntimeError:  # TensorFlow already started (called from a test): keep its pools
        pass

    model = Genesis(image_size=args.image_size, num_slots=args.num_slots).build_for_images()
    path = os.path.join(tempfile.mkdtemp(), "genesis", "1")
    start = time.perf_counter()
    export_model(model, path)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    loaded = tf.saved_model.load(path)
    load_s = time.perf_counter() - start
    print(f"GENESIS K={args.num_slots} {args.image_size}x{args.image_size}; {args.threads} "
          f"threads; export {export_s:.1f} s, load {load_s:.1f} s; "
          f"load average {os.getloadavg()[0]:.2f}; {cpu_model()}")
    rows = []
    for signature in ("decompose", "generate"):
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            if signature == "decompose":
                images = tf.constant(np.random.default_rng(0).integers(
                    0, 256, [batch, args.image_size, args.image_size, 3], np.uint8))
                call = lambda images=images: loaded.signatures["decompose"](images=images)  # noqa: E731
            else:
                call = lambda batch=batch: loaded.signatures["generate"](  # noqa: E731
                    num_images=tf.constant(batch), seed=tf.constant(0, tf.int64))
            median, best = _median_seconds(call, args.repeats)
            rows.append({"signature": signature, "batch_size": batch, "median_s": median,
                         "min_s": best, "images_per_s": batch / median})
    print(f"{'signature':<10} {'batch':>5} {'median ms':>10} {'min ms':>8} {'images/s':>9}")
    for row in rows:
        print(f"{row['signature']:<10} {row['batch_size']:>5} {row['median_s'] * 1e3:>10.1f} "
              f"{row['min_s'] * 1e3:>8.1f} {row['images_per_s']:>9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "export_s": export_s, "load_s": load_s,
                       "load_avg": os.getloadavg()[0], "cpu": cpu_model(), "tf": tf.__version__,
                       "rows": rows},
                      f, indent=2)


if __name__ == "__main__":
    main()

"""Where a GENESIS training step spends its time: TensorFlow's profiler, summed per op type
and per layer.

    python benchmarks/profile_step.py --image_size=32 --num_slots=4 --batch_size=16  # demo
    python benchmarks/profile_step.py                     # gqn.gin's model: K=7, 64x64, b32
    python benchmarks/profile_step.py --policy=mixed_bfloat16 --top=15
    python benchmarks/profile_step.py --quick             # a tiny configuration, seconds

The step is train_step.py's (the training loop's own step in a tf.function). After
--warmup untimed steps, --steps steps run under tf.profiler; the trace's op events (the
executor threads' kernels) are summed per step: by op type, by layer (forward and
backward separately: the gradient ops carry their layer's name under "gradient_tape/"),
and the slowest single ops. "op ms" add up kernel wall time and can exceed the step's
wall time when independent ops overlap on the inter-op threads. The trace is kept in
--logdir for TensorBoard's profile plugin.
"""
import argparse
import collections
import json
import os
import pathlib
import re
import tempfile
import time

import tensorflow as tf
import train_step
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from genesis_tf.training import precision as precision_lib

# Trace events that are the runtime's bookkeeping, not kernels.
_BOOKKEEPING = ("ThreadpoolListener", "ExecutorState", "ParallelFor")


def _layer(op_name):
    """'gradient_tape/genesis_1/mask_decoder_1/gated_deconv_4_1/conv2d_transpose/X' ->
    ('mask_decoder/gated_deconv_4', 'backward')."""
    direction = "backward" if op_name.startswith("gradient_tape/") else "forward"
    parts = [re.sub(r"_\d+$", "", p) for p in op_name.split("/")]
    parts = [p for p in parts if p not in ("gradient_tape", "genesis", "genesis_s")]
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0], direction


def op_events(logdir):
    """(op name, op type, milliseconds) of every kernel in the newest trace under logdir."""
    paths = sorted(pathlib.Path(logdir).rglob("*.xplane.pb"), key=os.path.getmtime)
    if not paths:
        raise SystemExit(f"no profiler trace under {logdir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(paths[-1].read_bytes())
    host = next(p for p in space.planes if p.name == "/host:CPU")
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name
            if name.startswith(_BOOKKEEPING) or ":" not in name:
                continue
            op_name, op_type = name.rsplit(":", 1)
            yield op_name, op_type, event.duration_ps / 1e9


def summarise(events, steps):
    by_type, count, by_layer, by_op = (collections.Counter() for _ in range(4))
    for op_name, op_type, ms in events:
        by_type[op_type] += ms / steps
        count[op_type] += 1 / steps
        by_layer[_layer(op_name)] += ms / steps
        by_op[f"{op_name} ({op_type})"] += ms / steps
    return {
        "ops_per_step": round(sum(count.values())),
        "op_ms_per_step": sum(by_type.values()),
        "by_type": [{"type": t, "ms": ms, "ops": round(count[t])}
                    for t, ms in by_type.most_common()],
        "by_layer": [{"layer": layer, "direction": d, "ms": ms}
                     for (layer, d), ms in by_layer.most_common()],
        "slowest_ops": [{"op": op, "ms": ms} for op, ms in by_op.most_common(50)],
    }


def run(args):
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    precision_lib.validate(args.policy)
    tf.keras.utils.set_random_seed(0)
    _, _, replica_step = train_step.build(args)
    images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3])
    step = train_step.make_step(replica_step, images, "function")
    for _ in range(args.warmup):
        train_step.run_step(step)
    logdir = args.logdir or tempfile.mkdtemp(prefix="profile_step_")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step.run_step(step)
    wall = (time.perf_counter() - start) / args.steps
    tf.profiler.experimental.stop()
    return {"config": vars(args), "logdir": logdir, "wall_s_per_step": wall,
            "load_avg": os.getloadavg()[0], "tf": tf.__version__,
            **summarise(op_events(logdir), args.steps)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_step.add_step_arguments(parser)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--top", type=int, default=12, help="rows per table")
    parser.add_argument("--logdir", default=None, help="default: a new temporary folder")
    parser.add_argument("--quick", action="store_true", help="32x32, K=3, batch 2, 1 step")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.num_slots, args.batch_size = 32, 3, 2
        args.steps, args.warmup = 1, 1
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (the first call traces)")
    result = run(args)
    total = result["op_ms_per_step"]
    print(f"\n{args.model} K={args.num_slots} {args.image_size}x{args.image_size} batch "
          f"{args.batch_size} {args.policy}; {args.threads} threads; load "
          f"{result['load_avg']:.2f}; {result['wall_s_per_step']:.3f} s/step while profiled; "
          f"{result['ops_per_step']} ops/step, {total:.0f} op ms/step")
    print(f"\n{'op type':28s} {'ms/step':>9s} {'share':>6s} {'ops':>5s}")
    for row in result["by_type"][:args.top]:
        print(f"{row['type']:28s} {row['ms']:9.1f} {row['ms'] / total:6.1%} {row['ops']:5d}")
    print(f"\n{'layer':40s} {'direction':>9s} {'ms/step':>9s} {'share':>6s}")
    for row in result["by_layer"][:args.top]:
        print(f"{row['layer']:40s} {row['direction']:>9s} {row['ms']:9.1f} "
              f"{row['ms'] / total:6.1%}")
    print(f"\n{'slowest ops':100s} {'ms/step':>9s}")
    for row in result["slowest_ops"][:args.top]:
        print(f"{row['op'][-100:]:100s} {row['ms']:9.1f}")
    print(f"\ntrace: {result['logdir']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()

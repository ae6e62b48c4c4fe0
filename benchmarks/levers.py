"""What each speed lever is worth: GENESIS training steps of several variants, alternating.

    python benchmarks/levers.py                    # gqn.gin's model, 5 variants, ~9 min
    python benchmarks/levers.py --variants=baseline,mixed_bfloat16,xla --rounds=5
    python benchmarks/levers.py --quick            # a tiny configuration, seconds

Every variant is built in this one process and the timed steps alternate between them
(round r runs one step of each variant, starting at a different variant each round), so a
busy spell of the machine hits all variants alike — the fair way to compare on a shared
machine. Every variant times the training loop's own step
(genesis_tf.training.step.make_train_step: forward in training mode, loss terms, GECO
loss, gradients, optimizer, GECO update), built as genesis_tf.training.loop builds it
(make_optimizer's default torch_adam, learning rate 1e-4, epsilon 1e-8, built for the
model's variables; GECO for the image size) and run through the default strategy's
``run`` inside a tf.function, as the loop's inner loop runs it. The variants that undo a
lever patch this process's copy of the model only; the package itself always has every
lever on:

  baseline          the model as shipped: float32, tf.function, every lever on; in
                    training it decodes all K mask latents in one batch of B·K, as the
                    reference does (the decoder's batch norm normalises over B·K)
  explicit_padding  the gated convs give PyTorch's padding to TensorFlow's conv ops as
                    EXPLICIT padding (as the version before 2026-12-06 did), whose
                    gradients — and a transposed conv's forward op — run on Eigen's
                    generic kernels instead of oneDNN's (genesis_tf/layers/conv_ops.py)
  conv_full_window  the encoder head and the decoder stem (kernels that cover their whole
                    input) run as TensorFlow conv ops instead of one matmul each
  tconv_stride1     the mask decoder's stride-1 transposed convs run as TensorFlow's
                    transposed conv op instead of a conv with the flipped kernel
  keras_bn          Keras' BatchNormalization(synchronized=True) instead of the fused
                    batch norm of genesis_tf.layers.normalization
  decode_k_minus_1  the mask decoder decodes only the K−1 mask latents whose logits the
                    stick-breaking uses, in training too (as an earlier version did): the
                    difference to baseline is what decoding all K costs. Not the same
                    model in training — batch-norm statistics over B·(K−1) instead of
                    B·K — though identical in inference (tests/benchmarks)
  input             the step pulls its batch from genesis_tf.data's prefetched pipeline
                    (the synthetic dataset) inside the tf.function, as the loop does
  input_no_prefetch the same pipeline without its prefetch
  mixed_bfloat16    Keras' mixed_bfloat16 policy (bfloat16 compute, float32 variables;
                    the conv gradients in float32, genesis_tf/layers/conv_ops.py); it pays
                    only on CPUs with native bfloat16 arithmetic, so not in the default set
  xla               the whole step compiled with jit_compile=True

Prints a table (median and min s/step, ratio to baseline, first call = trace + compile,
analytical GFLOP, GFLOP/s) and writes JSON (--json).
"""
import argparse
import contextlib
import json
import os
import pathlib
import resource
import statistics
import time
import types

import keras
import tensorflow as tf
from flops import count_flops

from genesis_tf import data as data_lib
from genesis_tf.geco import GECO
from genesis_tf.layers import conv_ops, gated_conv
from genesis_tf.layers.gated_conv import GatedConv2D
from genesis_tf.models import Genesis
from genesis_tf.training.optimizers import TORCH_ADAM, make_optimizer
from genesis_tf.training.step import make_train_step

DEFAULT_VARIANTS = ("baseline,explicit_padding,conv_full_window,tconv_stride1,keras_bn,"
                    "decode_k_minus_1,input")
LEARNING_RATE = 1e-4  # the loop's defaults (make_optimizer.learning_rate, .epsilon)
ADAM_EPSILON = 1e-8
ALL_VARIANTS = DEFAULT_VARIANTS.split(",") + ["input_no_prefetch", "mixed_bfloat16", "xla"]


# --- the levers undone -------------------------------------------------------------------

# tf.nn's conv ops in place of genesis_tf.layers.conv_ops: they take GatedConv2D's PyTorch
# padding as EXPLICIT padding, as the version before 2026-12-06 did (in float32, conv_ops
# was these ops then).
_EXPLICIT_PADDING_OPS = types.SimpleNamespace(conv2d=tf.nn.conv2d,
                                              conv2d_transpose=tf.nn.conv2d_transpose)


def _with_explicit_padding(convolve):
    """A GatedConv2D's own _convolve, run with gated_conv's conv_ops swapped for
    _EXPLICIT_PADDING_OPS (while it traces)."""
    def convolve_with_explicit_padding(x):
        gated_conv.conv_ops = _EXPLICIT_PADDING_OPS
        try:
            return convolve(x)
        finally:
            gated_conv.conv_ops = conv_ops

    return convolve_with_explicit_padding


def _decode_k_minus_1(self, z_mask, training):
    """Mask decoding of K−1 latents in training too: the K-th, whose logits the
    stick-breaking never reads, is not decoded, so the decoder's batch norm normalises
    over B·(K−1) instead of B·K. In inference (moving statistics) the outputs are those of
    the model's own _decode_masks; in training they differ through those statistics."""
    batch, num_slots = tf.shape(z_mask)[0], z_mask.shape[1]
    size = self.image_size
    flat = tf.reshape(z_mask[:, : num_slots - 1], [-1, self.mask_latent_size])
    logits = tf.cast(self.mask_decoder(flat, training=training), tf.float32)
    logits = tf.reshape(logits, [batch, num_slots - 1, size, size, 1])
    log_masks, _ = self.stick_breaking(logits)
    return logits, log_masks


@contextlib.contextmanager
def _keras_batch_norm():
    def keras_bn(name=None):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True,
                                               name=name)

    original = gated_conv.batch_norm
    gated_conv.batch_norm = keras_bn
    try:
        yield
    finally:
        gated_conv.batch_norm = original


@contextlib.contextmanager
def _policy(name):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _unprefetched_synthetic(image_size, batch_size):
    ds = data_lib.train_dataset(data_lib.SYNTHETIC, image_size, batch_size, seed=0)
    # train_dataset ends in .prefetch(AUTOTUNE): step back over it (and its options).
    while type(ds).__name__ in ("PrefetchDataset", "_OptionsDataset"):
        ds = ds._input_dataset
    return ds


def build_variant(name, args, images):
    """A tf.function of no arguments running the loop's training step for variant `name`;
    it returns the step's loss-term means."""
    tf.keras.utils.set_random_seed(0)
    construction = {"keras_bn": _keras_batch_norm(),
                    "mixed_bfloat16": _policy("mixed_bfloat16")}.get(name,
                                                                     contextlib.nullcontext())
    with construction:
        model = Genesis(image_size=args.image_size, num_slots=args.num_slots)
        model.build_for_images()
    if name == "explicit_padding":
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, GatedConv2D):
                object.__setattr__(layer, "_convolve", _with_explicit_padding(layer._convolve))
    if name == "conv_full_window":
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, GatedConv2D):
                object.__setattr__(layer, "_full_window", lambda x: False)
    if name == "tconv_stride1":
        for layer in model._flatten_layers(include_self=False):
            if isinstance(layer, GatedConv2D):
                object.__setattr__(layer, "_transpose_as_conv", lambda: False)
    if name == "decode_k_minus_1":
        object.__setattr__(model, "_decode_masks", types.MethodType(_decode_k_minus_1, model))
    optimizer = make_optimizer(TORCH_ADAM, LEARNING_RATE, epsilon=ADAM_EPSILON)
    optimizer.build(model.trainable_variables)
    geco = GECO.for_image(args.image_size, args.image_size)
    replica_step = make_train_step(model, optimizer, geco, args.batch_size)
    strategy = tf.distribute.get_strategy()
    iterator = None
    if name == "input":
        iterator = iter(data_lib.train_dataset(data_lib.SYNTHETIC, args.image_size,
                                               args.batch_size, seed=0))
    elif name == "input_no_prefetch":
        iterator = iter(_unprefetched_synthetic(args.image_size, args.batch_size))

    def step():
        batch = images if iterator is None else next(iterator)["image"]
        return strategy.run(replica_step, args=(batch,))

    return tf.function(step, jit_compile=(name == "xla"))


def _wait(means):
    """The step's outputs as numbers (waits for the step to finish)."""
    return {key: float(value.numpy()) for key, value in means.items()}


def input_ms_per_batch(args, batches=20):
    """Milliseconds to produce one batch of the synthetic pipeline, alone, no prefetch."""
    iterator = iter(_unprefetched_synthetic(args.image_size, args.batch_size))
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)["image"].numpy()
    return (time.perf_counter() - start) / batches * 1e3


def run(args):
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(ALL_VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {ALL_VARIANTS}")
    images = tf.random.stateless_uniform(
        [args.batch_size, args.image_size, args.image_size, 3], seed=[0, 0])
    steps, first_call, gflop = {}, {}, {}
    for name in names:
        steps[name] = build_variant(name, args, images)
        gflop[name] = sum(count_flops(steps[name].get_concrete_function()).values()) / 1e9
        start = time.perf_counter()
        _wait(steps[name]())
        first_call[name] = time.perf_counter() - start
        print(f"{name}: traced and ran once in {first_call[name]:.1f} s", flush=True)
    for name in names:  # one untimed step each after tracing
        _wait(steps[name]())
    times = {name: [] for name in names}
    for r in range(args.rounds):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            start = time.perf_counter()
            _wait(steps[name]())
            times[name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {times[n][-1]:.2f}" for n in names), flush=True)
    rows = []
    for name in names:
        median = statistics.median(times[name])
        rows.append({"variant": name, "median_s": median, "min_s": min(times[name]),
                     "times_s": times[name], "first_call_s": first_call[name],
                     "gflop": gflop[name], "gflops_per_s": gflop[name] / median,
                     "tracings": steps[name].experimental_get_tracing_count()})
    base = next((r["median_s"] for r in rows if r["variant"] == "baseline"), None)
    for row in rows:
        row["vs_baseline"] = row["median_s"] / base if base else None
    return {"config": vars(args), "rows": rows, "input_ms_per_batch": input_ms_per_batch(args),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
            "load_avg": os.getloadavg()[0], "tf": tf.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, from {','.join(ALL_VARIANTS)}")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_slots", type=int, default=7)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="32x32, K=3, batch 2, 2 rounds")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.num_slots, args.batch_size, args.rounds = 32, 3, 2, 2
    result = run(args)
    print(f"\nGENESIS K={args.num_slots} {args.image_size}x{args.image_size} batch "
          f"{args.batch_size}; {args.threads} threads; {args.rounds} alternating rounds; "
          f"load {result['load_avg']:.2f}; peak RSS {result['peak_rss_gb']:.2f} GB; "
          f"input pipeline alone {result['input_ms_per_batch']:.1f} ms/batch")
    print(f"{'variant':18s} {'median s':>9s} {'min s':>7s} {'x base':>7s} {'1st s':>6s} "
          f"{'GFLOP':>7s} {'GFLOP/s':>8s}")
    for r in result["rows"]:
        ratio = f"{r['vs_baseline']:7.2f}" if r["vs_baseline"] else f"{'-':>7s}"
        print(f"{r['variant']:18s} {r['median_s']:9.3f} {r['min_s']:7.3f} {ratio} "
              f"{r['first_call_s']:6.1f} {r['gflop']:7.1f} {r['gflops_per_s']:8.1f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    return result


if __name__ == "__main__":
    main()

"""Fits one fixed batch with the reconstruction error alone (β = 0): when does a model get
past reconstructing each image's background?

    python benchmarks/overfit_batch.py --model=genesis_v2 --data_dir=DIR [--steps=600] \
        [--learning_rate=5e-4] [--torch] [--json=out.json]

The batch is the first --batch_size training images of --dataset (default: the demo's
offline Multi-dSprites) at --image_size. Adam on the mean reconstruction error, printed
every --every steps beside two levels of the same batch: "background only" (each image's
most common colour everywhere, one component) and "perfect" (every pixel exact), both
at σ_x 0.7, and GECO's goal at --goal_per_pixel. --torch trains the PyTorch GENESIS-V2
written from the specification (tests/helpers/torch_genesis_v2.py; needs torch) instead,
with PyTorch's own initialisation and draws: a plateau that both share is the model's,
not the port's. BUILD.md, "The demo", gives a run of both.
"""
import argparse
import json
import math
import os
import pathlib
import sys
import time

import numpy as np

PIXEL_STD = 0.7


def reference_levels(images, goal_per_pixel):
    """{'background_only', 'perfect', 'goal'}: errors in nats per image of a batch
    [B, S, S, 3] in [0, 1]."""
    constant = 0.5 * math.log(2 * math.pi * PIXEL_STD ** 2)
    background = []
    for image in images:
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        background.append(colours[counts.argmax()])
    squared = (images - np.asarray(background)[:, None, None, :]) ** 2
    per_image = (constant + squared / (2 * PIXEL_STD ** 2)).sum(axis=(1, 2, 3))
    return {"background_only": float(per_image.mean()),
            "perfect": constant * images[0].size,
            "goal": goal_per_pixel * images[0].size}


def load_batch(args):
    from genesis_tf import data

    dataset = data.eval_dataset(args.dataset, args.image_size, args.batch_size, split="train",
                                data_dir=args.data_dir, max_examples=args.batch_size)
    return next(iter(dataset))["image"].numpy()


def keras_trainer(args, images):
    """step() -> reconstruction error of this step, for a genesis_tf model."""
    import keras
    import tensorflow as tf

    from genesis_tf.models import Genesis, GenesisV2

    keras.utils.set_random_seed(args.seed)
    cls = {"genesis": Genesis, "genesis_v2": GenesisV2}[args.model]
    model = cls(image_size=args.image_size, num_slots=args.num_slots)
    optimizer = keras.optimizers.Adam(args.learning_rate)
    batch = tf.constant(images)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            out = model(batch, training=True)
            err = tf.reduce_mean(model.loss_terms(batch, out)["err"])
        variables = model.trainable_variables  # the prior's get none: no KL term
        pairs = [(g, v) for g, v in zip(tape.gradient(err, variables), variables, strict=True)
                 if g is not None]
        optimizer.apply_gradients(pairs)
        return err

    return lambda: float(step())


def torch_trainer(args, images):
    """step() for the PyTorch GENESIS-V2 of tests/helpers (a uniform draw and posterior
    noise of its own each step)."""
    try:
        import torch
    except ImportError:
        raise SystemExit("--torch needs PyTorch: pip install -e '.[test]'") from None
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from tests.helpers.torch_genesis_v2 import FEATURES, TorchGenesisV2

    torch.manual_seed(args.seed)
    model = TorchGenesisV2(args.image_size, args.num_slots)
    optimizer = torch.optim.Adam(model.parameters(), args.learning_rate)
    batch = torch.tensor(images).permute(0, 3, 1, 2).contiguous()
    size, slots = args.image_size, args.num_slots

    def step():
        uniform = torch.rand(len(images), 1, size, size)
        noise = torch.randn(len(images), slots, FEATURES)
        err = model(batch, uniform, noise)["err"].mean()
        optimizer.zero_grad()
        err.backward()
        optimizer.step()
        return err.item()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["genesis", "genesis_v2"], default="genesis_v2")
    parser.add_argument("--torch", action="store_true",
                        help="the PyTorch GENESIS-V2 of tests/helpers instead of ours")
    parser.add_argument("--dataset", default="multi_dsprites/offline_colored")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--num_slots", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--goal_per_pixel", type=float, default=0.5655)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.torch and args.model != "genesis_v2":
        parser.error("--torch is a GENESIS-V2 (tests/helpers/torch_genesis_v2.py)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    images = load_batch(args)
    levels = reference_levels(images, args.goal_per_pixel)
    name = "torch " + args.model if args.torch else args.model
    print(f"{name}: {len(images)} images {args.image_size}x{args.image_size}, K="
          f"{args.num_slots}, Adam {args.learning_rate:g}, err only; background only "
          f"{levels['background_only']:.1f}, perfect {levels['perfect']:.1f}, goal "
          f"{levels['goal']:.1f} nats per image", flush=True)
    step = (torch_trainer if args.torch else keras_trainer)(args, images)
    rows, started = [], time.monotonic()
    for index in range(args.steps + 1):
        err = step()
        if index % args.every == 0 or index == args.steps:
            rows.append({"step": index, "err": err})
            print(f"step {index:5d}  err {err:8.1f}  ({time.monotonic() - started:.0f} s)",
                  flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"model": name, "config": vars(args), "levels": levels, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

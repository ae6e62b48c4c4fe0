"""The embedded default: prepare offline Multi-dSprites, train GENESIS briefly, draw figures.

    python -m genesis_tf.demo [--minutes=8] [--output_dir=demo_output]

Writes into --output_dir: the model (checkpoints, TensorBoard logs), decomposition.png
(labelled: input | reconstruction | segmentation | m_k·x_k and m_k per slot, each row with
its foreground ARI) and generation.png (scenes built slot by slot from the prior). Prints
the foreground ARI and segmentation covering on 256 test images beside the paper's.
Rerunning resumes training from the checkpoint.
"""
import os
import sys
import time

from absl import flags

from genesis_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_float("minutes", 10.0, "Training time budget in minutes.")
flags.DEFINE_string("output_dir", "demo_output", "Where the model and figures go.")
flags.DEFINE_string("data_dir", None,
                    "TFDS data directory (default: <output_dir>/tensorflow_datasets).")
flags.DEFINE_string("dataset", None, "Override the dataset (e.g. 'synthetic').")
flags.DEFINE_integer("max_steps", None, "Stop after this many steps (default: time only).")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")

DEMO_GIN = "demo.gin"
EVAL_IMAGES = 256
PAPER_ARI = 0.57  # GENESIS, Multi-dSprites, foreground ARI (the issue / paper's table)


def main(argv):
    del argv
    cli.quiet_logging(cli.verbosity_requested(FLAGS))  # TF/TFDS info lines only on request
    import gin

    from genesis_tf import data as data_lib
    from genesis_tf import figures
    from genesis_tf.training import config, train

    output_dir = os.path.abspath(FLAGS.output_dir)
    data_dir = FLAGS.data_dir or os.path.join(output_dir, "tensorflow_datasets")
    os.makedirs(output_dir, exist_ok=True)
    bindings = [f"train.max_minutes = {FLAGS.minutes}", f"train.data_dir = '{data_dir}'"]
    if FLAGS.dataset:
        bindings.append(f"train.dataset = '{FLAGS.dataset}'")
    if FLAGS.max_steps:
        bindings.append(f"train.num_steps = {FLAGS.max_steps}")
    config.parse([os.path.join(config.gin_configs_dir(), DEMO_GIN)],
                 bindings + list(FLAGS.gin_bindings))
    dataset = gin.query_parameter("train.dataset")

    started = time.monotonic()
    if dataset != data_lib.SYNTHETIC:
        data_lib.prepare(dataset, data_dir=data_dir)
        print(f"Dataset ready ({time.monotonic() - started:.0f} s).", flush=True)

    print(f"Training GENESIS for up to {FLAGS.minutes:g} minutes; watch it with "
          f"tensorboard --logdir {output_dir}/model", flush=True)
    result = train(os.path.join(output_dir, "model"))

    split, image_size = "test", result.model.image_size
    ari, covering, batch, out = _evaluate(result.model, dataset, image_size, data_dir, split)
    step_text = f"after {result.step} training steps"
    decomposition = figures.save_figure(
        figures.decomposition_figure(
            batch["image"].numpy(), out, aris=batch["aris"],
            title=f"GENESIS decomposing {split} images {step_text} "
                  f"(foreground ARI {ari:.2f} on {EVAL_IMAGES})"),
        os.path.join(output_dir, "decomposition.png"))
    generation = figures.save_figure(
        figures.generation_figure(
            result.model.sample(8, seed=0),
            title=f"GENESIS generating scenes slot by slot {step_text}"),
        os.path.join(output_dir, "generation.png"))
    print(
        f"\nDone after {result.step} steps ({(time.monotonic() - started) / 60:.1f} min).\n"
        f"  negative ELBO (last batch): {result.metrics.get('elbo', float('nan')):.1f} nats\n"
        f"  on {EVAL_IMAGES} {split} images: foreground ARI {ari:.2f}, SC {covering['sc']:.2f}, "
        f"mSC {covering['msc']:.2f}\n"
        f"  (the GENESIS paper: foreground ARI {PAPER_ARI} on Multi-dSprites at 64x64 with "
        "the authors' fully trained model)\n"
        f"  decomposition: {decomposition}\n"
        f"  generation:    {generation}\n"
        f"  model:         {result.checkpoint}\n"
        f"  TensorBoard:   tensorboard --logdir {os.path.join(output_dir, 'model')}\n"
        "Run it again to train longer from the checkpoint.",
        flush=True,
    )
    return 0


def _evaluate(model, dataset, image_size, data_dir, split):
    """Foreground ARI and segmentation covering over EVAL_IMAGES test images, and the
    first 8 of them with their outputs and per-image ARIs for the figure."""
    import numpy as np

    from genesis_tf import data as data_lib
    from genesis_tf.metrics import foreground_ari, segmentation_covering

    true_ids, predicted, first = [], [], None
    for batch in data_lib.eval_dataset(dataset, image_size, 32, split=split,
                                       data_dir=data_dir, max_examples=EVAL_IMAGES):
        out = model(batch["image"], training=False)
        true_ids.append(batch["instance_ids"].numpy())
        predicted.append(out.log_masks.numpy()[..., 0].argmax(axis=1))
        if first is None:
            first = ({"image": batch["image"][:8]}, _first(out, 8))
    true_ids, predicted = np.concatenate(true_ids), np.concatenate(predicted)
    ari, per_image = foreground_ari(true_ids, predicted)
    covering = segmentation_covering(true_ids, predicted)
    first[0]["aris"] = per_image[:8]
    return ari, covering, first[0], first[1]


def _first(out, n):
    """The first n images of a SceneOutput."""
    return type(out)(*(None if t is None else t[:n] for t in out))


def run():
    """Console-script entry point (genesis-demo)."""
    cli.run_main(main)


if __name__ == "__main__":
    sys.exit(run())

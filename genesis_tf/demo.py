"""The embedded default: prepare offline Multi-dSprites, train GENESIS briefly, draw figures.

    python -m genesis_tf.demo [--minutes=8] [--output_dir=demo_output]

Writes into --output_dir: the model (checkpoints, TensorBoard logs), decomposition.png
(input | reconstruction | segmentation | m_k·x_k per slot) and generation.png (scenes
sampled slot by slot from the prior). Rerunning resumes training from the checkpoint.
"""
import os
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_float("minutes", 10.0, "Training time budget in minutes.")
flags.DEFINE_string("output_dir", "demo_output", "Where the model and figures go.")
flags.DEFINE_string("data_dir", None,
                    "TFDS data directory (default: <output_dir>/tensorflow_datasets).")
flags.DEFINE_string("dataset", None, "Override the dataset (e.g. 'synthetic').")
flags.DEFINE_integer("max_steps", None, "Stop after this many steps (default: time only).")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")

DEMO_GIN = "demo.gin"


def main(argv):
    del argv
    import gin

    from genesis_tf import data as data_lib
    from genesis_tf import visualise
    from genesis_tf.metrics import foreground_ari, segmentation_covering
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
    batch = next(iter(data_lib.eval_dataset(dataset, image_size, 8, split=split,
                                            data_dir=data_dir)))
    out = result.model(batch["image"], training=False)
    decomposition = visualise.save_png(
        visualise.decomposition_grid(batch["image"].numpy(), out),
        os.path.join(output_dir, "decomposition.png"), scale=3)
    generation = visualise.save_png(
        visualise.generation_grid(result.model.sample(8, seed=0)),
        os.path.join(output_dir, "generation.png"), scale=3)

    predicted = out.log_masks.numpy()[..., 0].argmax(axis=1)
    ari, _ = foreground_ari(batch["instance_ids"].numpy(), predicted)
    covering = segmentation_covering(batch["instance_ids"].numpy(), predicted)
    print(
        f"\nDone after {result.step} steps ({(time.monotonic() - started) / 60:.1f} min).\n"
        f"  negative ELBO (last batch): {result.metrics.get('elbo', float('nan')):.1f} nats\n"
        f"  on 8 {split} images: foreground ARI {ari:.2f}, SC {covering['sc']:.2f}, "
        f"mSC {covering['msc']:.2f}\n"
        f"  decomposition: {decomposition}\n"
        f"  generation:    {generation}\n"
        f"  model:         {result.checkpoint}\n"
        f"  TensorBoard:   tensorboard --logdir {os.path.join(output_dir, 'model')}\n"
        "Run it again to train longer from the checkpoint.",
        flush=True,
    )
    return 0


def run():
    """Console-script entry point (genesis-demo)."""
    app.run(main)


if __name__ == "__main__":
    sys.exit(run())

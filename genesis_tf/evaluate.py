"""Evaluates a trained run with the GENESIS paper's metrics.

    python -m genesis_tf.evaluate --model_dir=runs/md [--split=test] \\
        [--metrics=ari,sc,fid,probes] [--num_images=N] [--num_slots=K]

Prints a table (mean ± standard error over images, the checkpoint's step) and writes
<model_dir>/eval_<split>_<step>.json. Metrics:
  ari     foreground ARI (ground-truth background left out) and ARI over all pixels
  sc      segmentation covering SC (pixel-weighted) and mSC (unweighted)
  fid     FID of --fid_images generated and of as many reconstructed images against as
          many test images, with the 2015-12-05 Inception graph (--inception_path or
          GENESIS_TF_INCEPTION; nothing is downloaded)
  probes  ShapeStacks only: MLP probes on the model's features for stability, height and
          view (GENESIS Table 1 settings), trained on --probe_train_images of the train
          split and tested on --num_images of --split
The dataset and data_dir default to the run's own (its operative_config.gin).
Exit codes: 0 done, 2 a bad flag, no run or checkpoint, a dataset not prepared, a metric
the dataset cannot give, Inception weights not found.
"""
import json
import os
import sys

from absl import app, flags, logging

from genesis_tf import cli, progress
from genesis_tf.errors import UserError

METRICS = ("ari", "sc", "fid", "probes")
PAPER = "GENESIS paper, authors' released models (64x64)"

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The training run (python -m genesis_tf.train "
                    "--model_dir=...).")
flags.DEFINE_string("checkpoint", None, "A checkpoint of the run (default: the latest).")
flags.DEFINE_string("split", "test", "Dataset split to evaluate.")
flags.DEFINE_list("metrics", ["ari", "sc"], f"Any of {', '.join(METRICS)}.")
flags.DEFINE_integer("num_images", None, "Images of --split to score (default: all; FID: "
                     "--fid_images).", lower_bound=1)
flags.DEFINE_integer("num_slots", None, "K at evaluation (default: as trained).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.", lower_bound=1)
flags.DEFINE_string("dataset", None, "Override the run's dataset.")
flags.DEFINE_string("data_dir", None, "Override the run's TFDS data_dir.")
flags.DEFINE_integer("fid_images", 10_000, "Generated, reconstructed and test images for "
                     "FID (the paper: 10,000).", lower_bound=2)
flags.DEFINE_string("inception_path", None, "classify_image_graph_def.pb (or its folder); "
                    "default: $GENESIS_TF_INCEPTION.")
flags.DEFINE_integer("probe_train_images", 50_000, "Training images for the probes (the "
                     "paper: 50,000).", lower_bound=2)
flags.DEFINE_integer("probe_epochs", 100, "Epochs of probe training (the paper: 100).",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of posterior and prior samples.")
flags.mark_flags_as_required(["model_dir"])


class EvaluationError(UserError, ValueError):
    """A metric cannot be computed as asked; the message says why and what to do."""


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    verbose = cli.verbosity_requested(FLAGS)

    def fail(message):
        if verbose:
            logging.exception("details")
        print(f"error: {cli.one_line(message)}", file=sys.stderr)
        return 2

    # Flag mistakes first: they need no TensorFlow (seconds to import).
    unknown = [m for m in FLAGS.metrics if m not in METRICS]
    if unknown or not FLAGS.metrics:
        named = ", ".join(unknown) or "(none given)"
        return fail(f"--metrics={','.join(FLAGS.metrics)}: unknown {named}; choose from "
                    f"{', '.join(METRICS)}")
    if not os.path.isdir(FLAGS.model_dir):
        return fail(f"--model_dir={FLAGS.model_dir} does not exist; pass the folder a "
                    "training run wrote (python -m genesis_tf.train --model_dir=...)")
    cli.quiet_logging(verbose)

    from genesis_tf import data as data_lib
    from genesis_tf import runs
    from genesis_tf.runs import CheckpointMismatchError

    try:
        model, path, state = runs.restore_with_state(FLAGS.model_dir, FLAGS.checkpoint)
        step = state.get("step", 0)
    except (FileNotFoundError, CheckpointMismatchError) as error:
        return fail(error)
    run_info = runs.read_run_info(FLAGS.model_dir)
    dataset = FLAGS.dataset or run_info["dataset"]
    data_dir = FLAGS.data_dir or run_info["data_dir"]
    if dataset is None:
        return fail(f"{FLAGS.model_dir} records no dataset; pass --dataset")
    try:
        data_lib.check_available(dataset, data_dir)
        network = None
        if "fid" in FLAGS.metrics:  # before any long work: the weights must be there
            from genesis_tf.metrics import fid

            network = fid.load_inception(FLAGS.inception_path)
        print(f"Evaluating {path} (step {step}) on {dataset} {FLAGS.split}"
              + (f" with K={FLAGS.num_slots}" if FLAGS.num_slots else "") + ".", flush=True)
        results = evaluate(model, dataset, data_dir, network)
    except (data_lib.DatasetNotPreparedError, data_lib.UnknownDatasetError,
            EvaluationError, FileNotFoundError, ValueError) as error:
        return fail(error)

    report = {"model_dir": os.path.abspath(FLAGS.model_dir), "checkpoint": path,
              "step": step, "dataset": dataset, "split": FLAGS.split,
              "num_slots": FLAGS.num_slots or getattr(model, "num_slots", None),
              "metrics": results}
    target = os.path.join(FLAGS.model_dir, f"eval_{FLAGS.split}_{step}.json")
    partial = target + ".partial"
    with open(partial, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(partial, target)
    print(table(results, step))
    print(f"Written to {target}")
    return 0


def evaluate(model, dataset, data_dir, network=None):
    """{metric name: {'mean', 'stderr', 'count', ...} or {'value', ...}} for FLAGS.metrics."""
    from genesis_tf.evaluation import segmentation_metrics

    results = {}
    size = model.image_size
    if "ari" in FLAGS.metrics or "sc" in FLAGS.metrics:
        bar = progress.ProgressBar("segmentation", FLAGS.num_images)
        metrics, _ = segmentation_metrics(
            model, dataset, size, FLAGS.num_images, split=FLAGS.split, data_dir=data_dir,
            batch_size=FLAGS.batch_size, num_slots=FLAGS.num_slots, seed=FLAGS.seed,
            progress=bar)
        bar.finish()
        wanted = (["fg_ari", "ari"] if "ari" in FLAGS.metrics else []) + (
            ["sc", "msc"] if "sc" in FLAGS.metrics else [])
        results.update({name: metrics[name] for name in wanted})
    if "fid" in FLAGS.metrics:
        results.update(fid_metrics(model, dataset, data_dir, network))
    if "probes" in FLAGS.metrics:
        results.update(probe_metrics(model, dataset, data_dir))
    return results


def fid_metrics(model, dataset, data_dir, network):
    """FID of generated and of reconstructed images against the test images."""
    import tensorflow as tf

    from genesis_tf import data as data_lib
    from genesis_tf.metrics import fid

    n, batch = FLAGS.fid_images, FLAGS.batch_size

    def test_images():
        for b in data_lib.eval_dataset(dataset, model.image_size, batch, split=FLAGS.split,
                                       data_dir=data_dir, max_examples=n):
            yield b["image"]

    reconstruct = tf.function(lambda x, s: model(x, training=False, num_slots=FLAGS.num_slots,
                                                 seed=s).recon, reduce_retracing=True)
    generate = tf.function(lambda count, s: model.sample(batch_size=count, seed=s,
                                                         num_slots=FLAGS.num_slots).recon)

    def reconstructions():
        for i, images in enumerate(test_images()):
            yield reconstruct(images, tf.constant(FLAGS.seed + i, tf.int32))

    def generated():
        done = 0
        while done < n:
            count = min(batch, n - done)
            yield generate(count, tf.constant(FLAGS.seed + done, tf.int32))
            done += count

    statistics = {}
    for name, images in (("test", test_images), ("generated", generated),
                         ("reconstructed", reconstructions)):
        bar = progress.ProgressBar(f"FID, {name} images", n)
        # 8 bits by truncation, as the reference saved its images (np.uint8(255·x)).
        statistics[name] = fid.statistics_of(images(), network, progress=bar,
                                             rounding="truncate")
        bar.finish()
    count = statistics["test"].count
    if count < n:
        logging.warning("the %s split has %d images, fewer than --fid_images=%d", FLAGS.split,
                        count, n)
    return {
        f"fid_{name}": {"value": statistics[name].frechet_distance(statistics["test"]),
                        "count": statistics[name].count, "reference_count": count}
        for name in ("generated", "reconstructed")
    }


def probe_metrics(model, dataset, data_dir):
    """Test accuracy of the ShapeStacks probes (stability, height, view)."""
    from genesis_tf.metrics import probes

    if not dataset.startswith("shapestacks"):
        raise EvaluationError(f"probes need ShapeStacks labels; {dataset} has none (evaluate "
                              "a run trained on shapestacks, or pass --dataset=shapestacks)")
    collected = {}
    for split, count in (("train", FLAGS.probe_train_images), (FLAGS.split, FLAGS.num_images)):
        bar = progress.ProgressBar(f"probe features, {split}", count)
        collected[split] = probes.collect_features(
            model, dataset, model.image_size, split, data_dir=data_dir,
            batch_size=FLAGS.batch_size, max_examples=count, progress=bar,
            num_slots=FLAGS.num_slots)
        bar.finish()
    accuracies = probes.run_probes(collected["train"], collected[FLAGS.split],
                                   epochs=FLAGS.probe_epochs)
    count = len(collected[FLAGS.split][0])
    return {f"probe_{task}": dict(values, count=count) for task, values in accuracies.items()}


def table(results, step):
    """The printed table: one row per metric."""
    rows = [f"{'metric':<20} {'value':>17} {'images':>8}   (checkpoint step {step})"]
    for name, value in results.items():
        if "mean" in value:
            text = f"{value['mean']:.4f} ± {value['stderr']:.4f}"
            count = value["count"]
            if value.get("skipped"):
                name = f"{name} ({value['skipped']} skipped)"
        elif "accuracy" in value:
            text = f"{100 * value['accuracy']:.1f} %"
            count = value.get("count", "")
        else:
            text, count = f"{value['value']:.2f}", value.get("count", "")
        rows.append(f"{name:<20} {text:>17} {count!s:>8}")
    return "\n".join(rows)


def run():
    """Console-script entry point (genesis-evaluate)."""
    cli.run_main(main)


if __name__ == "__main__":
    sys.exit(run())

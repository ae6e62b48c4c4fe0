"""Evaluates a trained run with the GENESIS paper's metrics.

    python -m genesis_tf.evaluate --model_dir=runs/md [--split=test] \\
        [--metrics=ari,sc,fid,probes] [--num_images=N] [--num_slots=K]

Prints a table (mean ± standard error over images, the checkpoint's step), then writes
<model_dir>/eval_<split>_<step>.json (_K<k> with --num_slots, _<dataset> with --dataset),
keeping the metrics of earlier evaluations in that file that this one does not recompute;
--output names another file. If the file cannot be written (a read-only or full folder),
the results are printed as JSON on stdout instead. Metrics:
  ari     foreground ARI (ground-truth background left out) and ARI over all pixels
  sc      segmentation covering SC (pixel-weighted) and mSC (unweighted)
  fid     FID of --fid_images generated and of as many reconstructed images against as
          many test images, with the 2015-12-05 Inception graph (--inception_path or
          GENESIS_TF_INCEPTION; nothing is downloaded)
  probes  ShapeStacks only: MLP probes on the model's features for stability, height and
          view (GENESIS Table 1 settings), trained on --probe_train_images of the train
          split and tested on --num_images of --split
GENESIS-V2 has two mask sets and ari and sc score both: fg_ari, ari, sc and msc its IC-SBP
masks (as the reference's ari_fg, msc_fg), fg_ari_decoded, ... its decoded masks (the
reference's *_r); each row of the table and each metric in the file says which masks.
FID needs nothing more: generated and reconstructed images are made with the decoded masks.
The dataset and data_dir default to the run's own (its run.json). The metrics are the
evaluators of genesis_tf.metrics.suite; this binary only turns flags into its Options.
Exit codes: 0 done, 2 a bad flag, no run or checkpoint, a dataset not prepared, a metric
the dataset cannot give, Inception weights not found.
"""
import json
import os
import sys

from absl import app, flags

from genesis_tf import cli
from genesis_tf.errors import UserError
from genesis_tf.metrics import inception_file, suite
from genesis_tf.metrics.suite import METRICS, EvaluationError

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
flags.DEFINE_string("output", None, "The results JSON (default: <model_dir>/eval_<split>_"
                    "<step>.json, where later evaluations add their metrics).")
flags.mark_flags_as_required(["model_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _check_flags()
    cli.quiet_logging(cli.verbosity_requested(FLAGS))

    from genesis_tf import data as data_lib
    from genesis_tf import runs

    model, path, state = runs.restore_with_state(FLAGS.model_dir, FLAGS.checkpoint)
    step = state.get("step", 0)
    run_info = runs.read_run_info(FLAGS.model_dir)
    dataset = FLAGS.dataset or run_info["dataset"]
    data_dir = FLAGS.data_dir or run_info["data_dir"]
    if dataset is None:
        raise EvaluationError(f"{FLAGS.model_dir} records no dataset; pass --dataset")
    data_lib.check_available(dataset, data_dir)
    evaluators = suite.evaluators(FLAGS.metrics, _options(data_dir))  # loads FID's weights
    print(f"Evaluating {path} (step {step}) on {dataset} {FLAGS.split}"
          + (f" with K={FLAGS.num_slots}" if FLAGS.num_slots else "") + ".", flush=True)
    results = suite.run_all(evaluators, model, dataset)
    print(suite.table(results, step, dataset), flush=True)  # first: a failed write loses nothing
    _warn_if_fewer_images(results, dataset)

    report = {"model_dir": os.path.abspath(FLAGS.model_dir), "checkpoint": path,
              "step": step, "dataset": dataset, "split": FLAGS.split,
              "num_slots": FLAGS.num_slots or getattr(model, "num_slots", None),
              "metrics": {name: dict(value, settings=_settings()) for name, value
                          in results.items()}}
    _save(report, FLAGS.output or os.path.join(FLAGS.model_dir, _result_name(step, dataset)))
    return 0


def _check_flags():
    """Flag mistakes first: they need no TensorFlow (seconds to import)."""
    suite.check_metrics(FLAGS.metrics, what=f"--metrics={','.join(FLAGS.metrics)}")
    if not os.path.isdir(FLAGS.model_dir):
        raise UserError(f"--model_dir={FLAGS.model_dir} does not exist; pass the folder a "
                        "training run wrote (python -m genesis_tf.train --model_dir=...)")
    if "fid" in FLAGS.metrics:
        try:
            inception_file.resolve(FLAGS.inception_path)
        except FileNotFoundError as error:
            raise EvaluationError(str(error)) from error


def _result_name(step, dataset):
    """eval_<split>_<step>[_K<k>][_<dataset>].json: one file per checkpoint, split, K and
    dataset, into which later evaluations merge their metrics."""
    parts = [f"eval_{FLAGS.split}_{step}"]
    if FLAGS.num_slots:
        parts.append(f"K{FLAGS.num_slots}")
    if FLAGS.dataset:  # another dataset than the run's
        parts.append(dataset.replace("/", "-"))
    return "_".join(parts) + ".json"


def _settings():
    """What a metric was computed with, kept beside it (files merge several evaluations)."""
    return {"num_images": FLAGS.num_images, "seed": FLAGS.seed,
            "batch_size": FLAGS.batch_size, "checkpoint": FLAGS.checkpoint}


def _warn_if_fewer_images(results, dataset):
    """One line when --num_images asked for more images than the split holds."""
    if not FLAGS.num_images:
        return
    scored = [v["count"] + v.get("skipped", 0) for v in results.values()
              if "mean" in v or "accuracy" in v]
    if scored and max(scored) < FLAGS.num_images:
        print(f"warning: --num_images={FLAGS.num_images}, but the {FLAGS.split} split of "
              f"{dataset} has only {max(scored)} images; all of them were scored",
              file=sys.stderr, flush=True)


def _save(report, target):
    """Merges the metrics into `target` (keeping earlier ones) and writes it; if that
    fails (a read-only or full folder), prints the results as JSON on stdout instead."""
    import tensorflow as tf

    from genesis_tf.run_safety import write_atomically

    report = _merged(report, target)
    text = json.dumps(report, indent=1, sort_keys=True)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        write_atomically(target, text + "\n")  # whole or not at all, no partial left
    except (OSError, tf.errors.OpError) as error:
        # OSError from makedirs; TensorFlow's errors end with the system's reason.
        reason = getattr(error, "strerror", None) or str(error).rsplit("; ", 1)[-1]
        print(f"warning: cannot write {target} ({reason}); the results "
              "follow as JSON on stdout (--output=FILE writes them elsewhere)",
              file=sys.stderr, flush=True)
        print(text, flush=True)
        return
    print(f"Written to {target}")


def _merged(report, target):
    """`report` with the metrics of an earlier evaluation in `target` that it does not
    recompute."""
    try:
        with open(target) as f:
            earlier = json.load(f)["metrics"]
    except (OSError, ValueError, KeyError, TypeError):
        return report  # no earlier file (or not one of ours): nothing to keep
    return dict(report, metrics={**earlier, **report["metrics"]})


def _options(data_dir):
    """The evaluators' options from the flags."""
    return suite.Options(
        split=FLAGS.split, num_images=FLAGS.num_images, num_slots=FLAGS.num_slots,
        seed=FLAGS.seed, batch_size=FLAGS.batch_size, data_dir=data_dir,
        fid_images=FLAGS.fid_images, inception_path=FLAGS.inception_path,
        probe_train_images=FLAGS.probe_train_images, probe_epochs=FLAGS.probe_epochs,
        show_progress=True)


def run():
    """Console-script entry point (genesis-evaluate)."""
    cli.run_main(main)


if __name__ == "__main__":
    sys.exit(run())

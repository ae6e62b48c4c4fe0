"""The embedded default: prepare offline Multi-dSprites, train GENESIS briefly, draw figures.

    python -m genesis_tf.demo [--minutes=6] [--output_dir=demo_output]

Writes into --output_dir: the model (checkpoints, TensorBoard logs), decomposition.png
(labelled: input | reconstruction | segmentation | m_k·x_k and m_k per slot, each row with
its foreground ARI) and generation.png (scenes built slot by slot from the prior). Prints
the foreground ARI and segmentation covering on 256 test images beside the paper's.
Rerunning resumes training from the checkpoint. --weights=FILE starts a new run from a
model trained in the demo's setting (python -m genesis_tf.tools.write_weights writes one).
"""
import json
import os
import sys
import time

from absl import flags

from genesis_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_float("minutes", 6.0, "Training time budget in minutes.")
flags.DEFINE_string("output_dir", "demo_output", "Where the model and figures go.")
flags.DEFINE_string("data_dir", None,
                    "TFDS data directory (default: <output_dir>/tensorflow_datasets).")
flags.DEFINE_string("dataset", None, "Override the dataset (e.g. 'synthetic').")
flags.DEFINE_integer("max_steps", None, "Stop after this many steps (default: time only).")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
flags.DEFINE_string("weights", None,
                    "A weights file (python -m genesis_tf.tools.write_weights) of a model "
                    "trained in the demo's setting to start from; default: the demo model "
                    "shipped with genesis_tf when there is one (genesis_tf/demo_model/).")
flags.DEFINE_bool("from_scratch", False, "Train from a random initialisation.")

DEMO_GIN = "demo.gin"
EVAL_IMAGES = 256
SHIPPED_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_model",
                               "weights.npz")
PAPER_ARI = 0.57  # GENESIS, Multi-dSprites, foreground ARI (the issue / paper's table)
# A trained model is continued at the rate of the shipped model's last phase: its mSC went
# from 0.52 to 0.56 within 90 steps of lowering demo.gin's 5e-4 to it (demo_model/README).
CONTINUE_LEARNING_RATE = 1e-4
START_RECORD = "demo_start.json"  # in the model dir: what a run started from, for resumes


def main(argv):
    del argv
    cli.quiet_logging(cli.verbosity_requested(FLAGS))  # TF/TFDS info lines only on request
    import gin

    from genesis_tf import data as data_lib
    from genesis_tf.plotting import figures
    from genesis_tf.training import config, train

    output_dir = os.path.abspath(FLAGS.output_dir)
    data_dir = FLAGS.data_dir or os.path.join(output_dir, "tensorflow_datasets")
    os.makedirs(output_dir, exist_ok=True)
    _configure(data_dir)
    dataset = gin.query_parameter("train.dataset")

    started = time.monotonic()
    if dataset != data_lib.SYNTHETIC:
        data_lib.prepare(dataset, data_dir=data_dir)
        print(f"Dataset ready ({time.monotonic() - started:.0f} s).", flush=True)

    model_dir = os.path.join(output_dir, "model")
    start = _starting_weights(model_dir, dataset, data_dir)  # a bad --weights: UserError
    rate = (f" at learning rate {CONTINUE_LEARNING_RATE:g} (a trained model's; demo.gin's "
            "from scratch)") if start else ""
    name = figures.MODEL_NAMES.get(config.configured_model_name(), "the model")
    print(f"Training {name} for up to {FLAGS.minutes:g} minutes{rate}; watch it with "
          f"tensorboard --logdir {model_dir}", flush=True)
    if start:
        _configure(data_dir, start)
    result = train(model_dir)

    split = "test"
    scores, first = _segmentation_scores(result.model, dataset, data_dir, keep_first=8)
    count = scores["num_images"]
    ari = f"{scores['fg_ari']:.2f}{_which_masks(scores)}"
    decomposition, generation = _draw_figures(result, first, split, ari, count, output_dir)
    print(
        f"\nDone after {result.step} steps ({(time.monotonic() - started) / 60:.1f} min).\n"
        + f"  negative ELBO (last batch): {result.metrics.get('elbo', float('nan')):.1f} nats\n"
        + (f"  started from {start['path']} at step {start['step']} (foreground ARI "
           f"{start['fg_ari']:.2f} there); {_steps(result.step - start['step'])} "
           "trained here\n" if start else "")
        + f"  on {count} {split} images: {_scores_text(scores)}\n"
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


def _draw_figures(result, first, split, ari, count, output_dir):
    """decomposition.png and generation.png of the trained model; their paths (ari: the
    foreground ARI as text, for the title)."""
    from genesis_tf.plotting import figures

    step_text = f"after {result.step} training steps"
    name = figures.MODEL_NAMES.get(type(result.model).__name__, type(result.model).__name__)
    decomposition = figures.save_figure(
        figures.decomposition_figure(
            first["image"], first["out"], aris=first["aris"],
            title=f"{name} decomposing {split} images {step_text} "
                  f"(foreground ARI {ari} on {count})"),
        os.path.join(output_dir, "decomposition.png"))
    generation = figures.save_figure(
        figures.generation_figure(
            result.model.sample(8, seed=0),
            title=f"GENESIS generating scenes slot by slot {step_text}"),
        os.path.join(output_dir, "generation.png"))
    return decomposition, generation


def _configure(data_dir, start=None):
    """Parses demo.gin with the flags' bindings. A run that continues a trained model
    (`start`, from _starting_weights) also binds its weights file and
    CONTINUE_LEARNING_RATE, after the user's bindings: gin settings like any other, so the
    run's operative_config.gin records them."""
    import gin

    from genesis_tf.training import config

    bindings = [f"train.max_minutes = {FLAGS.minutes}", f"train.data_dir = {data_dir!r}"]
    if FLAGS.dataset:
        bindings.append(f"train.dataset = {FLAGS.dataset!r}")
    if FLAGS.max_steps:
        bindings.append(f"train.num_steps = {FLAGS.max_steps}")
    bindings += list(FLAGS.gin_bindings)
    if start:
        bindings += [f"train.warm_start = {start['path']!r}",
                     f"make_optimizer.learning_rate = {CONTINUE_LEARNING_RATE!r}"]
    gin.clear_config()  # the second parse (with `start`) replaces the first
    config.parse([os.path.join(config.gin_configs_dir(), DEMO_GIN)], bindings)


def _starting_weights(model_dir, dataset, data_dir):
    """{'path', 'step', scores} of the weights file this run starts from, or None: a new
    run starts from --weights, else from the shipped demo model if there is one, unless
    --from_scratch. A run with a checkpoint resumes from it (and reports what it started
    from: START_RECORD)."""
    import tensorflow as tf

    from genesis_tf.training import config, warm_start

    record = os.path.join(model_dir, START_RECORD)
    if tf.train.latest_checkpoint(model_dir):  # a resume: as the run started
        if not os.path.exists(record):
            return None
        with open(record) as f:
            return json.load(f)
    if FLAGS.from_scratch:
        return None
    path = FLAGS.weights
    if path is None:
        if not os.path.exists(SHIPPED_WEIGHTS):
            return None
        path = SHIPPED_WEIGHTS
    model = config.configured_model()
    try:
        state = warm_start.load_into(model, path, what="--weights")  # refuses other models
    except warm_start.WarmStartError as error:
        if FLAGS.weights:
            raise
        # --gin_bindings changed the model: the shipped weights do not apply.
        print(f"Training from a random initialisation ({cli.one_line(error)}).", flush=True)
        return None
    scores, _ = _segmentation_scores(model, dataset, data_dir)
    print(f"Starting from {path}, trained for {state['step']} steps: foreground ARI "
          f"{scores['fg_ari']:.2f}, mSC {scores['msc']:.2f} on {scores['num_images']} test "
          "images. This run continues its training (--from_scratch starts anew).",
          flush=True)
    start = {name: float(scores[name]) for name in ("fg_ari", "sc", "msc")}
    start.update(num_images=int(scores["num_images"]), path=path, step=int(state["step"]))
    os.makedirs(model_dir, exist_ok=True)
    with open(record, "w") as f:
        json.dump(start, f)
    return start


def _steps(count):
    return f"{count} step" if count == 1 else f"{count} steps"


def _segmentation_scores(model, dataset, data_dir, keep_first=0):
    """({'fg_ari', 'sc', 'msc': means, 'num_images'}, first) on the first EVAL_IMAGES test
    images; first: the first `keep_first` of them with their outputs, for the figure."""
    from genesis_tf.metrics import suite

    evaluator = suite.SegmentationEvaluator(
        suite.Options(split="test", num_images=EVAL_IMAGES, data_dir=data_dir),
        keep_first=keep_first)
    metrics = evaluator.run(model, dataset)
    scores = evaluator.means(metrics)
    scores["num_images"] = evaluator.num_images
    return scores, evaluator.first


def _which_masks(scores):
    """' with the IC-SBP masks' for a model with two mask sets (GENESIS-V2: its plain keys
    score the IC-SBP masks), else ''."""
    return " with the IC-SBP masks" if "fg_ari_decoded" in scores else ""


def _scores_text(scores):
    """'foreground ARI a, SC s, mSC m', and for GENESIS-V2 which masks and the decoded
    masks' scores too."""
    text = (f"foreground ARI {scores['fg_ari']:.2f}, SC {scores['sc']:.2f}, mSC "
            f"{scores['msc']:.2f}{_which_masks(scores)}")
    if "fg_ari_decoded" not in scores:
        return text
    return (f"{text}; foreground ARI {scores['fg_ari_decoded']:.2f}, SC "
            f"{scores['sc_decoded']:.2f}, mSC {scores['msc_decoded']:.2f} with the decoded masks")


def run():
    """Console-script entry point (genesis-demo)."""
    cli.run_main(main)


if __name__ == "__main__":
    sys.exit(run())

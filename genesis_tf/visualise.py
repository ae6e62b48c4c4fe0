"""Labelled figures of a trained run (any model type), as PNG.

    python -m genesis_tf.visualise --model_dir=runs/md --what=decomposition --out=d.png

--what: decomposition (GENESIS Fig. 4, MONet Fig. 3; each row with its foreground ARI when
the dataset has instance masks; GENESIS-V2's with its decoded and its IC-SBP masks and the
ARI of each), generation (GENESIS Fig. 3: scenes from the prior built slot by slot),
samples (a grid of generated scenes) or traversal (MONet Fig. 5: one slot of the first
image, its most active latent dimensions varied one per row); drawn by
genesis_tf.plotting.figures. Exit codes: 0 written, 2 a bad flag, no run or checkpoint, a
dataset not prepared.
"""
import json
import os

from absl import flags

from genesis_tf import cli
from genesis_tf.errors import UserError

FIGURES = ("decomposition", "generation", "samples", "traversal")

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The training run (required).")
flags.DEFINE_string("what", None, f"The figure (required): one of {', '.join(FIGURES)}.")
flags.DEFINE_string("out", None, "PNG file to write (required).")
flags.DEFINE_integer("num_images", 8, "Images (scenes) in the figure.")
flags.DEFINE_integer("num_slots", None, "K (default: as trained).")
flags.DEFINE_integer("slot", None, "traversal: slot to vary, 1..K (default: the largest "
                     "after the background).")
flags.DEFINE_integer("dims", 3, "traversal: dimensions per latent group.")
flags.DEFINE_string("split", "test", "Dataset split of the input images.")
flags.DEFINE_integer("seed", 0, "Seed of posterior and prior samples.")
flags.DEFINE_string("checkpoint", None, "A checkpoint of the run (default: the latest).")
flags.DEFINE_string("dataset", None, "The dataset of the images (default: the run's).")
flags.DEFINE_string("data_dir", None, "Its TFDS data_dir (default: the run's).")


class VisualiseError(UserError, ValueError):
    """A flag or a run that cannot give the figure asked for; the message says why."""


def _check_flags(argv):
    """Flag mistakes first: they need no TensorFlow (seconds to import)."""
    if len(argv) > 1:
        raise VisualiseError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("model_dir", "what", "out"):
        if not FLAGS[name].value:
            raise VisualiseError(f"--{name} is required (python -m genesis_tf.visualise "
                                 "--model_dir=RUN --what=decomposition --out=FILE.png)")
    if FLAGS.what not in FIGURES:
        raise VisualiseError(f"--what={FLAGS.what}: choose from {', '.join(FIGURES)}")
    for name in ("num_images", "dims", "num_slots", "slot"):  # slots count from 1
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise VisualiseError(f"--{name}={FLAGS[name].value}: must be >= 1")
    if FLAGS.what == "traversal" and (trained_slots := _recorded_num_slots()) is not None:
        _check_slot(trained_slots)


def _recorded_num_slots():
    """K as the run's model.json records it (None when it does not)."""
    try:
        with open(os.path.join(FLAGS.model_dir, "model.json")) as f:
            slots = json.load(f)["config"]["num_slots"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no run here, or not ours: restoring it says why
    return slots if isinstance(slots, int) else None


def _check_slot(num_slots):
    if FLAGS.slot is not None and FLAGS.slot > num_slots:
        raise VisualiseError(f"--slot={FLAGS.slot}: the model has {num_slots} "
                             f"slot(s), numbered 1..{num_slots}")


def _load_batch(model):
    """(dataset name, the first --num_images images of --split) of the run's dataset."""
    from genesis_tf import data, runs

    recorded = runs.read_run_info(FLAGS.model_dir)
    dataset, data_dir = FLAGS.dataset or recorded["dataset"], FLAGS.data_dir or recorded["data_dir"]
    if dataset is None:
        raise VisualiseError(f"{FLAGS.model_dir} records no dataset; pass --dataset")
    data.check_available(dataset, data_dir)
    return dataset, next(iter(data.eval_dataset(dataset, model.image_size, FLAGS.num_images,
                                                split=FLAGS.split, data_dir=data_dir)))


def _decomposition(model, name, figures):
    dataset, batch = _load_batch(model)
    out = model(batch["image"], training=False, num_slots=FLAGS.num_slots, seed=FLAGS.seed)
    aris = None
    if "instance_ids" in batch:
        from genesis_tf.metrics.segmentation import foreground_aris

        aris = foreground_aris(batch["instance_ids"].numpy(), out)  # GENESIS-V2: both sets
    return figures.decomposition_figure(
        batch["image"].numpy(), out, aris=aris, max_rows=FLAGS.num_images,
        title=f"{name} decomposing {dataset} {FLAGS.split} images")


def _traversal(model, name, figures):
    from genesis_tf import traversal

    _check_slot(model.num_slots)  # also for a run without model.json
    dataset, batch = _load_batch(model)
    result = traversal.traverse(model, batch["image"].numpy(), dims_per_group=FLAGS.dims,
                                slot=None if FLAGS.slot is None else FLAGS.slot - 1)
    return figures.traversal_figure(result, title=f"{name}: traversing slot "
                                    f"{result.slot + 1} of a {dataset} {FLAGS.split} image")


def _generation(model, name, figures):
    samples = model.sample(batch_size=FLAGS.num_images, seed=FLAGS.seed,
                           num_slots=FLAGS.num_slots)
    if FLAGS.what == "samples":
        return figures.samples_figure(samples, title=f"{name}: samples from the prior")
    return figures.generation_figure(samples, max_rows=FLAGS.num_images,
                                     title=f"{name} generating scenes slot by slot")


def main(argv):
    _check_flags(argv)
    cli.quiet_logging(cli.verbosity_requested(FLAGS))
    from genesis_tf import runs
    from genesis_tf.plotting import figures

    model, _, state = runs.restore_with_state(FLAGS.model_dir, FLAGS.checkpoint)
    name = f"{figures.model_title(model)} (step {state.get('step', 0)})"
    draw = {"decomposition": _decomposition, "traversal": _traversal}
    figure = draw.get(FLAGS.what, _generation)(model, name, figures)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    print(f"Wrote {figures.save_figure(figure, FLAGS.out)}")
    return 0


def run():
    """Console-script entry point (genesis-visualise)."""
    cli.run_main(main)


if __name__ == "__main__":
    run()

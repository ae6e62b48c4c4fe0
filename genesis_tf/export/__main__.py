"""Exports a trained run as a SavedModel for TF Serving.

    python -m genesis_tf.export --model_dir=runs/gqn --export_dir=exports/gqn

writes exports/gqn/<step>/ (TF Serving's versioned layout: the server serves the highest
version in exports/gqn and picks up new ones as they appear). Serve it with

    docker run -p 8501:8501 -p 8500:8500 \\
      --mount type=bind,source=$PWD/exports/gqn,target=/models/genesis \\
      -e MODEL_NAME=genesis tensorflow/serving

Exit codes: 0 exported, 2 no run, no checkpoint, a checkpoint of another model, an
existing version or a bad flag (one line on stderr says which and how to fix it).
"""
import os

from absl import app, flags

from genesis_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The training run to export (python -m "
                    "genesis_tf.train --model_dir=...).")
flags.DEFINE_string("export_dir", None, "The model's folder for TF Serving; the export goes "
                    "to export_dir/<version>/.")
flags.DEFINE_integer("version", None, "Version folder name; default: the checkpoint's "
                     "training step.", lower_bound=0)
flags.DEFINE_integer("num_slots", None, "K of the exported model (default: as trained); "
                     "GENESIS decomposes into any K >= 2.", lower_bound=2)
flags.DEFINE_string("checkpoint", None, "A checkpoint of the run (default: the latest), "
                    "e.g. runs/gqn/ckpt-5000.")
flags.DEFINE_integer("max_generate_images", 256, "Largest num_images that generate "
                     "accepts in one request.", lower_bound=1)
flags.DEFINE_integer("max_decompose_images", 256, "Largest batch of images that "
                     "decompose, decompose_float and features accept in one request.",
                     lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Replace export_dir/<version> if it exists.")
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_logging(cli.verbosity_requested(FLAGS))
    from genesis_tf import runs
    from genesis_tf.export import ExportError, export_model

    if not os.path.isdir(FLAGS.model_dir):
        raise runs.NotARunError(
            f"--model_dir={FLAGS.model_dir} does not exist; pass the folder a training run "
            "wrote (python -m genesis_tf.train --model_dir=...)")
    model, path, state = runs.restore_with_state(FLAGS.model_dir, FLAGS.checkpoint)
    version = FLAGS.version if FLAGS.version is not None else state.get("step")
    if version is None:
        raise ExportError(f"{path} records no training step; pass --version=N")
    target = os.path.join(FLAGS.export_dir, str(version))
    print(f"Exporting {path} to {target} ...", flush=True)
    info = {"checkpoint": os.path.abspath(path), "training_step": state.get("step"),
            "geco_beta": state.get("geco_beta")}
    description = export_model(model, target, num_slots=FLAGS.num_slots, info=info,
                               overwrite=FLAGS.overwrite,
                               max_generate_images=FLAGS.max_generate_images,
                               max_decompose_images=FLAGS.max_decompose_images)
    print(summary(description, target))
    return 0


def summary(description, target):
    """What a user wants to see after an export: the model and the signatures."""
    config = description["config"]
    beta = description.get("geco_beta")
    lines = [
        f"Exported {description['class_name']}: K={description['num_slots']}, "
        f"{description['image_size']}x{description['image_size']} images, training step "
        f"{description.get('training_step')}, GECO beta "
        f"{'-' if beta is None else f'{beta:.4g}'}",
        f"  configuration: {', '.join(f'{k}={v}' for k, v in sorted(config.items()))}",
        f"  SavedModel: {os.path.abspath(target)}",
        "  signatures:",
    ]
    for name, signature in description["signatures"].items():
        def fmt(specs):
            return ", ".join(f"{key} {dtype}{shape}" for key, (dtype, shape) in specs.items())

        lines.append(f"    {name}({fmt(signature['inputs'])})")
        lines.append(f"      -> {fmt(signature['outputs'])}")
    lines.append(f"  description: {os.path.join(target, 'assets', 'genesis_tf_model.json')}")
    return "\n".join(lines)


def run():
    """Console-script entry point (genesis-export)."""
    cli.run_main(main)


if __name__ == "__main__":
    run()

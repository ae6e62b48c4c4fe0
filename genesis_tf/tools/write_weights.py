"""Writes a run's weights (float16), training step and GECO state to one .npz file.

    python -m genesis_tf.tools.write_weights --model_dir=runs/demo/model --output=weights.npz
    genesis-write-weights --model_dir=RUN --output=FILE [--checkpoint=RUN/ckpt-5000]

A new run starts from the file with `train.warm_start = 'weights.npz'` (gin), the demo with
--weights=weights.npz (genesis_tf.training.warm_start describes the file).

Exit codes: 0 written, 2 no run, no checkpoint or a checkpoint of another model (one line
on stderr says which and how to fix it).
"""
import os

from absl import app, flags

from genesis_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The training run (python -m genesis_tf.train "
                    "--model_dir=...).")
flags.DEFINE_string("output", None, "The weights file to write (.npz).")
flags.DEFINE_string("checkpoint", None, "A checkpoint of the run (default: the latest), "
                    "e.g. runs/gqn/ckpt-5000.")
flags.mark_flags_as_required(["model_dir", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_logging(cli.verbosity_requested(FLAGS))
    from genesis_tf.training import warm_start

    output, step = warm_start.save_from_run(FLAGS.model_dir, FLAGS.output, FLAGS.checkpoint)
    print(f"Wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB, step {step}).")
    return 0


def run():
    """Console-script entry point (genesis-write-weights)."""
    cli.run_main(main)


if __name__ == "__main__":
    run()

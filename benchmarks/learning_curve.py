"""Foreground ARI, SC and mSC of every checkpoint of a run: the learning curve.

For GENESIS-V2 the plain keys score the IC-SBP masks and the ``*_decoded`` keys the
decoded ones (genesis_tf/metrics/segmentation.py); both are printed and written.

    python benchmarks/learning_curve.py --model_dir=RUN [--follow] [--num_images=256] \
        [--json=curve.json] [--every=500]

Each checkpoint is restored in turn (train.keep_checkpoints must be large enough to keep
them) and scored on the first --num_images test images of the run's dataset. --follow
keeps polling for new checkpoints until --stop_after_step is scored (for a run in
progress). --every=N scores only the checkpoints at multiples of N steps. Prints one line
per checkpoint; --json writes all rows (and a rerun with the same --json skips them).
"""
import argparse
import json
import os
import time

import tensorflow as tf

from genesis_tf import runs
from genesis_tf.metrics import suite


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", default=None, help="default: the run's train.data_dir")
    parser.add_argument("--dataset", default=None, help="default: the run's train.dataset")
    parser.add_argument("--num_images", type=int, default=256)
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--stop_after_step", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--every", type=int, default=None)
    args = parser.parse_args()

    dataset = args.dataset or runs.read_run_info(args.model_dir)["dataset"]
    if dataset is None:
        raise SystemExit(f"train.dataset not found in {args.model_dir}; pass --dataset")
    data_dir = args.data_dir or runs.read_run_info(args.model_dir)["data_dir"]
    evaluator = suite.SegmentationEvaluator(
        suite.Options(num_images=args.num_images, data_dir=data_dir), metrics=("ari", "sc"))
    rows, done = [], set()
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            rows = json.load(f)["rows"]
        done = {row["step"] for row in rows}
    while True:
        state = tf.train.get_checkpoint_state(args.model_dir)
        paths = list(state.all_model_checkpoint_paths) if state else []
        for path in paths:
            facts = runs.training_state(path)
            if facts["step"] in done or (args.every and facts["step"] % args.every):
                continue
            model = runs.restore(args.model_dir, checkpoint=path)
            started = time.monotonic()
            metrics = evaluator.run(model, dataset)
            scores = evaluator.means(metrics)
            row = dict(step=facts["step"], beta=facts.get("geco_beta"), **scores,
                       num_images=evaluator.num_images)
            rows.append(row)
            done.add(row["step"])
            print(f"step {row['step']:6d}  "
                  + "  ".join(f"{name} {value:.3f}" for name, value in scores.items())
                  + f"  beta {row['beta']:.3g}  ({time.monotonic() - started:.0f} s)",
                  flush=True)
            if args.json:
                rows.sort(key=lambda r: r["step"])
                with open(args.json, "w") as f:
                    json.dump({"model_dir": os.path.abspath(args.model_dir),
                               "dataset": dataset, "num_images": args.num_images,
                               "rows": rows}, f, indent=1)
        finished = args.stop_after_step is not None and args.stop_after_step in done
        if not args.follow or finished:
            return
        time.sleep(30)


if __name__ == "__main__":
    main()

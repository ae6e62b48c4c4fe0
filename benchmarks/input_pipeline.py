"""Images per second of the training input pipeline, per dataset.

    python benchmarks/input_pipeline.py --data_dir=~/tensorflow_datasets [--batches=300]

For each dataset prepared in --data_dir the training pipeline of genesis_tf.data (read,
decode, crop/resize to 64×64, shuffle, batch 32, prefetch) runs for --batches batches after
a warm-up; the table gives images/s. Datasets that are not prepared are built from the
builders' dummy_data/ into a scratch folder (marked "dummy" in the table: the same decode
and resize work per image, but a tiny file set that stays in the page cache). Writes JSON
next to the table with --json.
"""
import argparse
import json
import os
import pathlib
import tempfile
import time

import tensorflow as tf

from genesis_tf import data

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATASETS = ["multi_dsprites/offline_colored", "gqn_rooms_ring_camera", "shapestacks"]


def measure(name, data_dir, batches, batch_size, image_size):
    ds = data.train_dataset(name, image_size, batch_size, data_dir=data_dir, seed=0)
    iterator = iter(ds)
    for _ in range(20):  # warm-up: fill the shuffle buffer and the prefetch queue
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)["image"].numpy()
    elapsed = time.perf_counter() - start
    return batches * batch_size / elapsed


def build_from_dummy(name, scratch):
    import tensorflow_datasets as tfds

    base = name.split("/")[0]
    manual = ROOT / "tfds_builders" / base / "dummy_data"
    builder = tfds.builder(name, data_dir=scratch)
    if base == "multi_dsprites":
        from tfds_builders.multi_dsprites import multi_dsprites_dataset_builder as lib

        lib.SPLIT_SIZES.update(train=2000, validation=10, test=10)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets"))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    rows, scratch = [], tempfile.mkdtemp(prefix="genesis_bench_")
    for name in args.datasets.split(","):
        source, data_dir = "prepared", args.data_dir
        try:
            data.builder(name, data_dir)
        except data.DatasetNotPreparedError:
            build_from_dummy(name, scratch)
            source, data_dir = "dummy", scratch
        rate = measure(name, data_dir, args.batches, args.batch_size, args.image_size)
        rows.append({"dataset": name, "source": source, "images_per_sec": round(rate, 1)})
    print(f"\nInput pipeline, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'dataset':34s} {'source':9s} {'images/s':>10s}")
    for row in rows:
        print(f"{row['dataset']:34s} {row['source']:9s} {row['images_per_sec']:10.1f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"rows": rows, "tf": tf.__version__, "load": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()

"""Images per second of the training input pipeline, per dataset.

    python benchmarks/input_pipeline.py --data_dir=~/tensorflow_datasets [--batches=300]

For each dataset prepared in --data_dir the training pipeline of genesis_tf.data (read,
decode, crop/resize to 64×64 — CLEVR with masks: MONet's crop and 128×128, as its
experiments — shuffle, batch 32, prefetch) runs for --batches batches after a warm-up; the
table gives images/s. DeepMind's multi-object datasets (objects_room, clevr_with_masks,
dm_multi_dsprites, tetrominoes) are included; pick datasets with --datasets=a,b.
Datasets that are not prepared are built from the builders' dummy_data/ into a scratch
folder (marked "dummy" in the table: the same decode and resize work per image, but a tiny
file set that stays in the page cache). Writes JSON next to the table with --json.
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
DATASETS = ["multi_dsprites/offline_colored", "gqn_rooms_ring_camera", "shapestacks",
            "objects_room/train", "clevr_with_masks", "dm_multi_dsprites/colored_on_colored",
            "tetrominoes"]
# The model input size of each dataset's experiments where it is not 64 (--image_size
# overrides it for every dataset).
IMAGE_SIZES = {"clevr_with_masks": 128}
# Builders of DeepMind's multi-object datasets: their carved validation/test splits are cut
# to one record so that the 4-record dummy files leave 2 training examples.
MULTI_OBJECT = {"objects_room", "clevr_with_masks", "dm_multi_dsprites", "tetrominoes"}


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
    if base in MULTI_OBJECT:
        from tfds_builders.dm_multi_object import testing

        builder.SPLIT_RECORDS.update(testing.SMALL_SPLIT_RECORDS)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets"))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=None,
                        help="model input size (default 64; clevr_with_masks 128)")
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
        size = args.image_size or IMAGE_SIZES.get(name.split("/")[0], 64)
        rate = measure(name, data_dir, args.batches, args.batch_size, size)
        rows.append({"dataset": name, "source": source, "image_size": size,
                     "images_per_sec": round(rate, 1)})
    print(f"\nInput pipeline, batch {args.batch_size}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'dataset':38s} {'source':9s} {'size':>5s} {'images/s':>10s}")
    for row in rows:
        print(f"{row['dataset']:38s} {row['source']:9s} {row['image_size']:5d} "
              f"{row['images_per_sec']:10.1f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"rows": rows, "tf": tf.__version__, "load": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()

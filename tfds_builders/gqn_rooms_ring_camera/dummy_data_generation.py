"""Writes dummy_data/: GQN TFRecords in the bucket's real format (run once; output is
committed). Three train files and one test file, two scenes each, 10 JPEG frames per
scene with distinct colours per split."""
import os

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))


def scene(rng, base):
    frames = []
    for _ in range(10):
        image = np.zeros((64, 64, 3), np.uint8) + rng.integers(0, 60, 3).astype(np.uint8)
        image[:32] = base
        y, x = rng.integers(8, 48, 2)
        image[y:y + 10, x:x + 10] = rng.integers(0, 255, 3)
        frames.append(tf.io.encode_jpeg(image, quality=95).numpy())
    cameras = rng.uniform(-1, 1, 50).astype(np.float32)
    return tf.train.Example(features=tf.train.Features(feature={
        "frames": tf.train.Feature(bytes_list=tf.train.BytesList(value=frames)),
        "cameras": tf.train.Feature(float_list=tf.train.FloatList(value=cameras)),
    }))


def main():
    rng = np.random.default_rng(0)
    for split, count, total, base in (("train", 3, 2160, 200), ("test", 1, 240, 40)):
        folder = os.path.join(HERE, "dummy_data", "rooms_ring_camera", split)
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            path = os.path.join(folder, f"{i + 1:04d}-of-{total:04d}.tfrecord")
            with tf.io.TFRecordWriter(path) as writer:
                for _ in range(2):
                    writer.write(scene(rng, base).SerializeToString())


if __name__ == "__main__":
    main()
